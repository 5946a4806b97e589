"""Built-in backbones: `hf` (any Hugging Face encoder, by Hub id or local path) and `scratch`.

`hf` loads `AutoTokenizer` + `AutoModelForSequenceClassification` with a fresh classification head.
Weights are only ever read from safetensors (`use_safetensors=True`): a repository that has only
`pytorch_model.bin` is refused with a message saying how to convert it, because unpickling a
downloaded file can run arbitrary code. Every way loading can fail is turned into one
`ModelLoadError` paragraph that names the model and the likely cause; `check_reachable` runs the
same diagnosis cheaply (config.json only) before any training starts.

`scratch` builds a small randomly initialised BERT or RoBERTa with a tokenizer trained on the
training split: the quickstart and the tests use it, since they have no Hub access. Its code is in
runner.builtins.scratch; both register here, as the plugin `runner.builtins.backbones`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from runner.builtins.scratch import ScratchOptions, adapt_scratch, build_scratch
from runner.core import hub
from runner.errors import ModelLoadError, OptionError
from runner.plugins.hookspecs import hookimpl
from runner.train import loading
from runner.train.backbones import add_special_tokens, label_maps

# Files any one of which makes a directory a loadable tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
# Config attributes that hold the dropout of the encoder output / the classifier, by architecture.
DROPOUT_KEYS = ("hidden_dropout_prob", "classifier_dropout", "dropout", "seq_classif_dropout", "hidden_dropout")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


# ---------------------------------------------------------------------------------------------- hf


class HFOptions(BaseModel):
    """Options of the `hf` backbone (a member's `options` table)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    revision: str | None = Field(None, description="Branch, tag or commit of a Hub repository.")
    trust_remote_code: bool = Field(False, description="Run the repository's own Python code (never on by default).")
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0, description="Overrides the config's dropout.")
    local_files_only: bool = Field(False, description="Use the local Hugging Face cache only, never the network.")


def _is_offline(options: HFOptions | None) -> bool:
    from huggingface_hub import constants

    # Read at call time: huggingface_hub caches HF_HUB_OFFLINE at import, tests patch the constant.
    return bool(constants.HF_HUB_OFFLINE) or bool(options and options.local_files_only)


def _local_only(options: HFOptions | None) -> bool:
    """Whether loading a Hub id must use the local cache only: offline mode, `local_files_only`, or a Hub
    that runner.core.hub found unreachable (probed once per process, so nothing waits on retries)."""
    return _is_offline(options) or not hub.status().online


def _looks_local(model: str) -> bool:
    """A path rather than a Hub id: absolute, ./ ../ ~, more than one slash, or existing on disk."""
    return (os.path.exists(model) or model.startswith((".", "~", "/")) or os.path.isabs(model)
            or not _HUB_ID.match(model))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _diagnose(model: str, exc: BaseException | None, options: HFOptions | None, what: str = "model") -> ModelLoadError:
    """One paragraph naming the model and the most likely cause of `exc`."""
    from huggingface_hub import errors as hub_errors

    chain = _chain(exc) if exc is not None else []
    text = " ".join(str(e) for e in chain)
    kinds = tuple(type(e) for e in chain)

    def has(*types) -> bool:
        return any(issubclass(k, types) for k in kinds)

    # huggingface_hub's vendored httpx errors (ConnectError, ReadTimeout...) are not OSErrors: match by name
    network_error = any(word in c.__name__ for k in kinds for c in k.__mro__
                        for word in ("Connect", "Timeout", "NetworkError", "TransportError"))

    head = f"cannot load the {what} for {model!r}: "
    if _looks_local(model) and not os.path.exists(os.path.expanduser(model)):
        why = (f"the local path {str(Path(model).expanduser().resolve())!r} does not exist. Check the member's "
               "`model` (a relative path is resolved against the current directory), or give a Hub id "
               "like 'klue/bert-base'.")
    elif "safetensors" in text and ("does not appear to have" in text or "no file named" in text):
        why = _no_safetensors(model)
    elif os.path.isdir(model) and not os.path.isfile(os.path.join(model, "config.json")):
        why = (f"the local directory {model!r} does not hold a Hugging Face model (no config.json). "
               f"Original error: {text}")
    elif has(hub_errors.GatedRepoError):
        why = (f"'{model}' is a gated repository. Request access at https://huggingface.co/{model} and log in "
               "(`hf auth login`, or set HF_TOKEN) with an account that has been granted access.")
    elif has(hub_errors.RevisionNotFoundError):
        rev = options.revision if options else None
        why = f"revision {rev!r} does not exist in https://huggingface.co/{model}; fix `options.revision`."
    elif has(hub_errors.RepositoryNotFoundError) or "401 Client Error" in text or "Unauthorized" in text:
        why = (f"no repository '{model}' was found on the Hugging Face Hub. Check the spelling; if it is a "
               "private repository, log in (`hf auth login`, or set HF_TOKEN) with an account that can read it; "
               "if you meant a local directory, it does not exist.")
    elif _is_offline(options) and (has(hub_errors.LocalEntryNotFoundError) or network_error or "cache" in text):
        why = ("offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE or options.local_files_only) and the "
               "model is not in the local Hugging Face cache. Download it once with network access "
               f"(`hf download {model}`), or point `model` at a local directory holding it.")
    elif (probe := _unreachable()) is not None and (has(hub_errors.LocalEntryNotFoundError) or network_error
                                                     or "cache" in text):
        why = (f"{probe.describe()}, and the model is not in the local Hugging Face cache. Where there is network, "
               f"download it (`hf download {model} --local-dir DIR`) and point `model` at DIR, or fill the cache "
               "(`hf download " + model + "`) and run with HF_HUB_OFFLINE=1.")
    elif has(hub_errors.LocalEntryNotFoundError, ConnectionError, TimeoutError) or network_error:
        why = ("the Hugging Face Hub could not be reached (no network, a proxy or a firewall?) and the model "
               f"is not in the local cache. Check the connection, or download it elsewhere (`hf download {model}`) "
               "and point `model` at the local directory.")
    elif has(hub_errors.HFValidationError):
        why = "it is neither an existing local directory nor a valid Hub id of the form 'namespace/name'."
    else:
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown cause"
    return ModelLoadError(head + why)


def _unreachable():
    """runner.core.hub's status when it found the Hub unreachable (not merely offline mode), else None."""
    found = hub.known()
    return found if found is not None and not found.online and found.why != "HF_HUB_OFFLINE" else None


def _no_safetensors(model: str) -> str:
    return (f"'{model}' has no safetensors weights (only pytorch_model.bin), and runner never loads pickle files "
            "because unpickling can run arbitrary code. Convert it once: for a Hub repository use "
            "https://huggingface.co/spaces/safetensors/convert (it opens a pull request; then set "
            "options.revision = \"refs/pr/<number>\"), or for a local copy run "
            "`AutoModel.from_pretrained(path).save_pretrained(path)` in a trusted environment and point `model` at it.")


def _auto_map(path: Path):
    """A config's `auto_map` (custom code it names), or None; an unreadable file is for the load to report."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc.get("auto_map") if isinstance(doc, dict) else None


def check_reachable(model: str, options: HFOptions | None = None) -> None:
    """Fail early, before any training, if `model` cannot be loaded; raise ModelLoadError if so."""
    if options is None:
        options = HFOptions()
    path = Path(model).expanduser()
    if path.is_dir():
        missing = []
        if not (path / "config.json").is_file():
            missing.append("config.json")
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            missing.append("tokenizer files (tokenizer.json or vocab.txt...)")
        if not any((path / f).is_file() for f in SAFETENSORS_FILES):
            if (path / "pytorch_model.bin").is_file() or (path / "pytorch_model.bin.index.json").is_file():
                raise ModelLoadError(f"cannot load the model for {model!r}: " + _no_safetensors(model))
            missing.append("model.safetensors")
        if missing:
            raise ModelLoadError(f"cannot load the model for {model!r}: the local directory {str(path.resolve())!r} "
                                 f"does not hold a Hugging Face model: missing {', '.join(missing)}.")
        if not options.trust_remote_code:
            for name in ("config.json", "tokenizer_config.json"):
                mapped = _auto_map(path / name)
                if mapped is not None:
                    raise ModelLoadError(f"cannot load the model for {model!r}: {path / name} has auto_map {mapped!r}, "
                                         "which names Python code in the folder; runner runs no code from a model "
                                         "folder unless the member sets options.trust_remote_code = true.")
        return
    if _looks_local(model):
        raise _diagnose(model, None, options)
    from transformers.utils.hub import cached_file, has_file

    kwargs = dict(revision=options.revision, local_files_only=_local_only(options))
    try:
        found = cached_file(model, "config.json", **kwargs)
    except Exception as e:  # OSError wrapping a huggingface_hub error, or httpx errors
        raise _diagnose(model, e, options) from e
    if found is None:  # the repository exists but has no config.json
        raise ModelLoadError(f"cannot load the model for {model!r}: the repository has no config.json, so it is "
                             "not a transformers model.")
    try:
        has_safe = any(has_file(model, f, **kwargs) for f in SAFETENSORS_FILES)
    except Exception as e:
        raise _diagnose(model, e, options) from e
    if not has_safe:
        raise ModelLoadError(f"cannot load the model for {model!r}: " + _no_safetensors(model)
                             + " (Or, offline, its weights are not in the local cache.)")


def build_hf(ctx, options: HFOptions):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model_id, hub = _source(ctx, options)
    tokenizer = ctx.tokenizer if ctx.tokenizer is not None else _hf_tokenizer(model_id, ctx, options, hub)
    try:
        config = AutoConfig.from_pretrained(model_id, **label_maps(ctx), **hub)
        if options.dropout is not None:
            keys = [k for k in DROPOUT_KEYS if hasattr(config, k)]
            if not keys:
                raise OptionError("options.dropout", f"the config of {model_id!r} ({type(config).__name__}) "
                                                     "has no dropout setting runner knows how to override")
            for k in keys:
                setattr(config, k, options.dropout)
        torch.manual_seed(ctx.seed)  # the new classification head is random: make it reproducible
        model = _with_sdpa(
            AutoModelForSequenceClassification, model_id, config=config, use_safetensors=True,
            # a checkpoint that already has a head for another number of labels gets a fresh one
            ignore_mismatched_sizes=True, **hub)
    except OptionError:
        raise
    except Exception as e:
        raise _diagnose(model_id, e, options) from e
    _fit_embeddings(model, tokenizer)
    return model, tokenizer


def _with_sdpa(auto_class, model_id: str, **kwargs):
    """`auto_class.from_pretrained` asking for PyTorch's scaled-dot-product attention (fused kernels
    on a GPU, the same numbers as eager attention); a model class without SDPA support refuses the
    request, and is then loaded with its own default (eager) attention instead. What the checkpoint
    lacked and what it held unused are recorded on the model (runner.train.loading)."""
    try:
        model, info = auto_class.from_pretrained(model_id, attn_implementation="sdpa", output_loading_info=True,
                                                 **kwargs)
    except ValueError as e:
        if "sdpa" not in str(e).lower() and "attention" not in str(e).lower():
            raise
        model, info = auto_class.from_pretrained(model_id, output_loading_info=True, **kwargs)
    loading.record(model, Path(model_id).name if os.path.isdir(model_id) else model_id, info)
    return model


def _source(ctx, options: HFOptions) -> tuple[str, dict]:
    """Where the weights come from (the adapted folder when there is one) and the Hub arguments."""
    if ctx.adapted is not None:  # written by runner.train.adapt: a local folder, no revision, no remote code
        return str(ctx.adapted), dict(revision=None, trust_remote_code=False, local_files_only=True)
    model_id = str(ctx.model)
    if _looks_local(model_id):
        if not os.path.exists(os.path.expanduser(model_id)):
            raise _diagnose(model_id, None, options)
        local_only = True  # a local folder: nothing to fetch from the Hub
    else:
        local_only = _local_only(options)
    hub = dict(revision=options.revision, trust_remote_code=options.trust_remote_code, local_files_only=local_only)
    return os.path.expanduser(model_id), hub


def _hf_tokenizer(model_id: str, ctx, options: HFOptions, hub: dict):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, model_max_length=ctx.max_length, **hub)
    except Exception as e:
        raise _diagnose(model_id, e, options, "tokenizer") from e
    add_special_tokens(tokenizer, ctx.special_tokens)  # none are new in an adapted folder's tokenizer
    return tokenizer


def _fit_embeddings(model, tokenizer) -> None:
    # New ids need rows; a model whose embedding is already larger (padded vocabularies) keeps its size.
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))


def adapt_hf(ctx, options: HFOptions):
    """The member's model with a masked-LM head (`AutoModelForMaskedLM`), for runner.train.adapt."""
    import torch
    from transformers import AutoModelForMaskedLM

    model_id, hub = _source(ctx, options)
    tokenizer = _hf_tokenizer(model_id, ctx, options, hub)
    if tokenizer.mask_token is None:
        raise ModelLoadError(f"cannot adapt {model_id!r}: its tokenizer has no mask token, so it cannot be trained "
                             "with masked-LM; set `adapt = false` on the member")
    torch.manual_seed(ctx.seed)  # an MLM head the checkpoint lacks starts from the adaptation's seed
    try:
        model = _with_sdpa(AutoModelForMaskedLM, model_id, use_safetensors=True, **hub)
    except Exception as e:
        raise _diagnose(model_id, e, options, "masked-LM model") from e
    _fit_embeddings(model, tokenizer)
    return model, tokenizer


@hookimpl
def register_backbones(register):
    register("hf", build_hf, options=HFOptions, takes_model=True, check=check_reachable, adapt=adapt_hf)
    register("scratch", build_scratch, options=ScratchOptions, adapt=adapt_scratch)
