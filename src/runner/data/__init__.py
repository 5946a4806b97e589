"""Data: from a dataset loader's rows to checked, split, label-encoded examples with a content hash
(`prepare`, with the label rules in `labels`); the synthetic reviews (`synthetic`); tokenizers trained
from scratch (`tokenization`); the tokenization cache (`tokenized`); new texts to predict (`inputs`).
"""
