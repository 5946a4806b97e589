"""Plugins: discovery from a directory and from a real installed entry point, the errors a broken
plugin gives (naming its file, exit 2, no traceback), the example plugins, and the hook docs.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

import runner
from runner.errors import PluginError
from runner.plugins import hookspecs
from runner.plugins.registry import load_registry

REPO = Path(__file__).resolve().parents[2]

LOSS_AND_METRIC = """
    import torch.nn.functional as F
    from pydantic import BaseModel, ConfigDict

    import runner


    class ScaledOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        scale: float = 1.0


    def build_scaled(ctx, options):
        return lambda logits, labels: options.scale * F.cross_entropy(logits, labels)


    def error_rate(probs, labels):
        return float((probs.argmax(-1) != labels).mean())


    @runner.hookimpl
    def register_losses(register):
        register("scaled_ce", build_scaled, options=ScaledOptions)


    @runner.hookimpl
    def register_metrics(register):
        register("error_rate", error_rate, greater_is_better=False)
"""


def write_plugin(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def plugins_fails(run_cli, directory: Path) -> str:
    code, out, err = run_cli("plugins", "--plugins", directory)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    return err


# ---------------------------------------------------------------------------- a plugins directory


def test_plugins_directory_is_discovered(tmp_path):
    path = write_plugin(tmp_path / "plugins", "extra.py", LOSS_AND_METRIC)
    registry = load_registry(tmp_path / "plugins")
    loss = registry.get("losses", "scaled_ce")
    metric = registry.get("metrics", "error_rate")
    assert loss.origin == metric.origin == str(path)
    assert loss.options.__name__ == "ScaledOptions"
    assert metric.greater_is_better is False
    # the built-ins are still there, marked as such
    assert registry.get("losses", "focal").origin == "builtin"


def test_cli_lists_directory_plugins_with_their_file(tmp_path, run_cli, monkeypatch):
    write_plugin(tmp_path / "plugins", "extra.py", LOSS_AND_METRIC)
    monkeypatch.chdir(tmp_path)  # a short relative path, so the origin column shows it whole
    code, out, err = run_cli("plugins", "--plugins", "plugins")
    assert code == 0, err
    lines = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") >= 4}
    assert "plugins/extra.py" in lines["scaled_ce"] and "loss" in lines["scaled_ce"]
    assert "scale" in lines["scaled_ce"]  # the options column
    assert "plugins/extra.py" in lines["error_rate"] and "metric" in lines["error_rate"]
    assert "builtin" in lines["focal"]


def test_cli_shows_a_long_plugin_path_whole(tmp_path, run_cli):
    directory = tmp_path / ("a_rather_long_folder_name_" * 3) / "plugins"
    path = write_plugin(directory, "extra.py", LOSS_AND_METRIC)
    code, out, err = run_cli("plugins", "--plugins", directory)
    assert code == 0, err
    assert "extra.py" in out  # folded over lines in the table, never cut off
    code, out, err = run_cli("plugins", "--plugins", directory, "--format", "json")
    assert code == 0, err
    origins = {row["name"]: row["origin"] for row in json.loads(out)}
    assert origins["scaled_ce"] == str(path)


def test_cli_plugins_dir_that_does_not_exist(tmp_path, run_cli):
    err = plugins_fails(run_cli, tmp_path / "nowhere")
    assert "nowhere" in err and "not a directory" in err


def test_underscore_files_are_not_plugins(tmp_path):
    write_plugin(tmp_path / "plugins", "_helpers.py", "raise ImportError('not a plugin')\n")
    registry = load_registry(tmp_path / "plugins")
    assert registry.get("losses", "focal") is not None


# ---------------------------------------------------------------------------- an installed entry point


@pytest.fixture
def installed_fake_plugin(tmp_path, monkeypatch):
    """A real installed distribution `fakepkg` with a `runner` entry point, on sys.path."""
    site = tmp_path / "site"
    write_plugin(site, "fake_runner_plugin.py", """
        from runner import hookimpl


        def mean_confidence(probs, labels):
            return float(probs.max(-1).mean())


        @hookimpl
        def register_metrics(register):
            register("mean_confidence", mean_confidence)
    """)
    dist = site / "fakepkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[runner]\nfake = fake_runner_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("fake_runner_plugin", None)


def test_entry_point_plugin_is_loaded(installed_fake_plugin):
    registry = load_registry()
    metric = registry.get("metrics", "mean_confidence")
    assert metric is not None
    assert "entry point fake" in metric.origin and "fake_runner_plugin" in metric.origin


def test_entry_point_plugin_not_seen_when_not_installed():
    assert load_registry().get("metrics", "mean_confidence") is None


def test_entry_point_plugin_that_fails_to_import(installed_fake_plugin):
    (installed_fake_plugin / "fake_runner_plugin.py").write_text("import no_such_module_here\n")
    with pytest.raises(PluginError) as info:
        load_registry()
    msg = str(info.value)
    assert "entry point fake" in msg and "no_such_module_here" in msg


# ---------------------------------------------------------------------------- broken plugins


def test_duplicate_name_names_both_origins(tmp_path, run_cli):
    path = write_plugin(tmp_path / "plugins", "my_focal.py", """
        import runner


        @runner.hookimpl
        def register_losses(register):
            register("focal", lambda ctx, options: None)
    """)
    with pytest.raises(PluginError) as info:
        load_registry(tmp_path / "plugins")
    msg = str(info.value)
    assert "'focal'" in msg and "builtin" in msg and str(path) in msg
    err = plugins_fails(run_cli, tmp_path / "plugins")
    assert "my_focal.py" in err and "builtin" in err and "registered twice" in err


def test_duplicate_name_between_two_plugin_files(tmp_path):
    first = write_plugin(tmp_path / "plugins", "one.py", LOSS_AND_METRIC)
    second = write_plugin(tmp_path / "plugins", "two.py", LOSS_AND_METRIC)
    with pytest.raises(PluginError) as info:
        load_registry(tmp_path / "plugins")
    assert str(first) in str(info.value) and str(second) in str(info.value)


def test_plugin_raising_import_error(tmp_path, run_cli):
    path = write_plugin(tmp_path / "plugins", "needs_lib.py", "import definitely_not_installed_lib\n")
    with pytest.raises(PluginError) as info:
        load_registry(tmp_path / "plugins")
    assert str(path) in str(info.value)
    err = plugins_fails(run_cli, tmp_path / "plugins")
    assert "needs_lib.py" in err and "definitely_not_installed_lib" in err
    assert "runner_plugins.needs_lib" not in sys.modules  # a failed import leaves nothing behind


def test_plugin_with_syntax_error(tmp_path, run_cli):
    write_plugin(tmp_path / "plugins", "broken.py", "import runner\n\ndef register_losses(register:\n    pass\n")
    err = plugins_fails(run_cli, tmp_path / "plugins")
    assert "broken.py" in err and "syntax error" in err and "line 3" in err


def test_plugin_with_wrong_hook_signature(tmp_path, run_cli):
    path = write_plugin(tmp_path / "plugins", "bad_sig.py", """
        import runner


        @runner.hookimpl
        def register_losses(reg, extra):
            pass
    """)
    with pytest.raises(PluginError) as info:
        load_registry(tmp_path / "plugins")
    assert str(path) in str(info.value) and "register_losses" in str(info.value)
    err = plugins_fails(run_cli, tmp_path / "plugins")
    assert "bad_sig.py" in err and "register_losses" in err


def test_plugin_with_a_misspelt_hook_name(tmp_path, run_cli):
    write_plugin(tmp_path / "plugins", "typo.py", """
        import runner


        @runner.hookimpl
        def register_loss(register):
            register("never_seen", lambda ctx, options: None)
    """)
    err = plugins_fails(run_cli, tmp_path / "plugins")
    assert "typo.py" in err and "unknown hook 'register_loss'" in err and "register_losses" in err


def test_optional_hook_of_another_version_is_allowed(tmp_path):
    write_plugin(tmp_path / "plugins", "future.py", LOSS_AND_METRIC + """

    @runner.hookimpl(optionalhook=True)
    def register_tokenizers(register):
        pass
    """)
    assert load_registry(tmp_path / "plugins").get("losses", "scaled_ce") is not None


def test_plugin_whose_register_hook_raises(tmp_path, run_cli):
    write_plugin(tmp_path / "plugins", "raises.py", """
        import runner


        @runner.hookimpl
        def register_metrics(register):
            raise RuntimeError("boom in the plugin")
    """)
    err = plugins_fails(run_cli, tmp_path / "plugins")
    assert "raises.py" in err and "boom in the plugin" in err


def test_register_with_options_that_are_not_a_model(tmp_path):
    write_plugin(tmp_path / "plugins", "bad_opts.py", """
        import runner


        @runner.hookimpl
        def register_losses(register):
            register("odd", lambda ctx, options: None, options=dict)
    """)
    with pytest.raises(PluginError, match="bad_opts.py.*pydantic model"):
        load_registry(tmp_path / "plugins")


def test_spec_validate_reports_a_broken_plugin_beside_the_spec(tmp_path, run_cli):
    write_plugin(tmp_path / "plugins", "broken.py", "raise ImportError('cannot find libfoo')\n")
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "t"\n[data]\nsource = "synthetic"\n[[members]]\nbackbone = "scratch"\n')
    code, out, err = run_cli("validate", spec, "--no-check-models")
    assert code == 2
    assert "broken.py" in err and "cannot find libfoo" in err
    assert "Traceback" not in out + err


# ---------------------------------------------------------------------------- the example plugins


@pytest.mark.parametrize("path", sorted((REPO / "plugins").glob("*.py")), ids=lambda p: p.name)
def test_example_plugin_loads_and_registers_something(path):
    registry = load_registry(REPO / "plugins")
    mine = [c for kind in registry.components.values() for c in kind.values() if c.origin == str(path)]
    assert mine, f"{path.name} registered nothing"
    for c in mine:
        options = getattr(c, "options", None)  # metrics and strategies take none
        assert options is None or options.model_validate({}) is not None  # defaults are valid


def test_the_gru_example_plugin_is_a_backbone():
    assert load_registry(REPO / "plugins").get("backbones", "gru") is not None


# ---------------------------------------------------------------------------- the hook docs


HOOKSPECS = [
    fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "runner_spec")
]


def test_hookspecs_are_found():
    names = {fn.__name__ for fn in HOOKSPECS}
    assert {"register_backbones", "register_losses", "register_datasets", "register_metrics"} <= names


@pytest.mark.parametrize("hook", HOOKSPECS, ids=lambda fn: fn.__name__)
def test_hookspec_documents_every_parameter(hook):
    doc = inspect.getdoc(hook) or ""
    assert doc.strip(), f"{hook.__name__} has no docstring"
    for param in inspect.signature(hook).parameters:
        # named in literal markup: ``register`` or ``register(name, ...)``
        assert re.search(rf"`{param}\b", doc), f"{hook.__name__}: parameter {param!r} is not documented"


def test_hookimpl_marker_is_runners():
    assert isinstance(runner.hookimpl, pluggy.HookimplMarker)
    assert runner.hookimpl.project_name == "runner"
