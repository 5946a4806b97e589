"""A run from a spec: `plan` checks the spec and its data, `training` finds or creates the run and
trains its members, `apply` applies a plan (its replicas over seeds from `repeats`, and its refit from
`refit`, the run retrained on train+valid).
"""
