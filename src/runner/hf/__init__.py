"""runner inside a Hugging Face `Trainer` script: `StoreCallback` stores the script's training as a run
(`trainer.add_callback(StoreCallback(store="results.duckdb", name="my-exp", labels=[...],
splits={"valid": ds_valid, "test": ds_test}))`), so that `runner compare`, `plot`, `report`,
`ensemble` and `export` answer for it as for a run of `runner apply`."""

from runner.hf.callback import StoreCallback

__all__ = ["StoreCallback"]
