"""Reading a store, never training and never writing it: the compare tables (`compare` and its
`compare_*` blocks for replicas, two runs, refits and calibrations), intervals over seeds (`stats`),
plots (`plot`, `sweep_plot`), a sweep's view (`sweep_view`), the end-of-run table (`summary`), the
HTML report (`report`) and the table renderers (`tables`).
"""
