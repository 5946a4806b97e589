"""The bottom layer: what every other part uses and that knows nothing of training, storing or plugins.

`records` (typed run, member and epoch records), `selection` (the pick rules of the strategies),
`maths` (softmax, per-example scores, accuracy, macro F1, log-loss), `failures` (what an exception
means as an exit code, message and log), `locks` (file locks between processes), `hub` (whether the
Hugging Face Hub can be reached), `progress` (the progress display), `quiet` (silencing libraries).
"""
