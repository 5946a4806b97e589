"""Sweeps: an Optuna search in which every trial is a run (`sweep`), planned from the spec (`plan`),
with the Optuna study, sampler, pruner and storage in `study`, and extra worker processes in `workers`.
"""
