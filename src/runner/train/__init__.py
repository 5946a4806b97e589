"""Training one member with Hugging Face `Trainer`.

`job` holds what training moves around (the run's `Plan`, a `MemberJob` per member); `arguments` and
`build` make the `TrainingArguments`, model, loss, splits and `Trainer`; `member` trains, with
`callback` storing each epoch, `evaluation` predicting the splits, `swa` averaging checkpoints and
`sampling` ordering length-grouped batches; `adapt` and `adapt_train` adapt an encoder with masked-LM
first; `dryrun` is the validation dry run; `backbones` and `losses` are what the built-in backbones
and losses share; `ranks` the primitives of one member over several processes.
"""
