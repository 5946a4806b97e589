"""Quiet libraries: what transformers, torch and the Hugging Face Hub would print between runner's
own lines (their warnings, progress bars and retry notices). Every process that trains or loads a
model calls it: the CLI, a Ray task, a torchrun rank."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager


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


@contextmanager
def quiet_loading():
    """While loading models for a caller's own process (`runner.load`): no progress bars from transformers
    or the Hugging Face Hub ("Loading weights" per member), and their settings as they were afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        hf_logging = None
    try:
        from huggingface_hub import utils as hub_utils
    except ImportError:
        hub_utils = None
    bars = hf_logging is not None and hf_logging.is_progress_bar_enabled()
    hub_bars = hub_utils is not None and not hub_utils.are_progress_bars_disabled()
    if bars:
        hf_logging.disable_progress_bar()
    if hub_bars:
        hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()
