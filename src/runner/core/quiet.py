"""Quiet libraries: what transformers, torch and the Hugging Face Hub would print between runner's
own lines (their warnings, progress bars and retry notices). Every process that trains or loads a
model calls it: the CLI, a Ray task, a torchrun rank."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")
    warnings.filterwarnings("ignore", module="torch")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars
        from huggingface_hub.utils import logging as hub_logging

        disable_progress_bars()  # "Writing model shards" bars between rich's progress lines
        # "Retrying in 8s [Retry 4/5]" lines: runner.core.hub decides once whether the Hub is reachable, and a
        # model that cannot be loaded is one paragraph naming its key
        hub_logging.set_verbosity_error()
    except ImportError:
        pass
