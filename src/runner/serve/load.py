"""What `runner serve` serves: a run of the store or an exported folder, loaded as `runner predict`
loads it (runner.use), with the test metrics /metadata shows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InputError
from runner.plugins.registry import load_registry
from runner.serve.app import Limits, create_app
from runner.serve.server import SETTINGS_ENV
from runner.store import Store
from runner.use.card import card_metrics
from runner.use.choice import check_calibrated, choose
from runner.use.export import load, read_manifest
from runner.use.predict import Predictor


@dataclass
class Served:
    predictor: Predictor
    card_metrics: dict | None  # the test metrics of the ensemble and each member, from the store or the export
    members_allowed: bool  # whether a request may ask for members' probabilities (see `load_served`)


def load_served(source: str, strategy: str | None, store: Path, registry, plugins: Path | None,
                calibrated: bool, batch_size: int | None = None) -> Served:
    """The Predictor of RUN or DIR; InputError (nothing loaded) for an unknown run or strategy, a damaged
    export, or --calibrated without a stored calibration. With --calibrated, members' probabilities are
    served only when every member has its own calibration (as `runner predict --calibrated --members`)."""
    if _is_dir(source):
        directory = Path(source)
        manifest = read_manifest(directory)
        if strategy not in (None, "selected", manifest["strategy"]):
            raise InputError(f"--strategy {strategy!r}: the export {source} holds strategy {manifest['strategy']!r} "
                             "only; export the run again with --strategy to use another")
        predictor = load(directory, plugins_dir=plugins, batch_size=batch_size, registry=registry)
        metrics = manifest.get("metrics")
    else:
        reader = Store(store).open_read()
        run = reader.run(source)
        choice = choose(reader, run, registry, strategy or "selected")
        if calibrated:
            check_calibrated(choice)
        metrics = card_metrics(reader, run, choice)
        predictor = Predictor.load(choice, registry=registry, batch_size=batch_size)
    if calibrated:
        check_calibrated(predictor.choice)
    members_allowed = not calibrated or all(m.name in predictor.choice.member_calibrations
                                            for m in predictor.choice.members)
    return Served(predictor, metrics, members_allowed)


def app_for(served: Served, calibrated: bool, limits: Limits):
    return create_app(served.predictor, calibrated, limits, served.card_metrics, served.members_allowed)


def app_from_environment():
    """The app of one worker process of `runner serve --workers K` (runner.serve.server.serve_workers)."""
    import json

    import torch

    s = json.loads(os.environ[SETTINGS_ENV])
    torch.set_num_threads(max(1, s["threads"]))
    plugins = Path(s["plugins"]) if s["plugins"] else None
    served = load_served(s["source"], s["strategy"], Path(s["store"]), load_registry(plugins), plugins,
                         s["calibrated"], s["batch_size"])
    return app_for(served, s["calibrated"], Limits(**s["limits"]))


def _is_dir(source: str) -> bool:
    try:
        return Path(source).is_dir()
    except (OSError, ValueError):
        return False
