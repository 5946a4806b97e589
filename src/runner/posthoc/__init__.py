"""What follows training, from stored probabilities alone: ensembles and their weights (`ensemble`),
the strategies' picks for a run (`picks`), and calibration (`calibration`, the maths; `calibrate`,
a run's checkpoints calibrated and stored).
"""
