"""An exported folder is untrusted input: a property mutates the manifest and the member files of a real
export (hand edits, damage, a copy cut short, files swapped, added or linked, custom code) and loads
it: either it loads and predicts exactly the ensemble its manifest describes (each member's
probabilities from the intact export, weighted by the mutated manifest's weights), or it is InputError
(exit 2) naming a file of the folder. Nothing else: no other exception, no NaN, no silently dropped
member, no file read from outside the folder, no code run from it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from predict_helpers import cli
from write_targets import budget

from runner.errors import InputError
from runner.use.export import load
from runner.use.manifest import sha256_of

torch = pytest.importorskip("torch")

SPEC = """
name = "untrusted"
seed = 5

[data]
source = "synthetic"
valid = 0.25
max_length = 24

[data.options]
size = 80

[train]
epochs = 1
batch_size = 16

[ensemble]
weights = [1.0, 3.0]

[[members]]
name = "a"
backbone = "scratch"
seed = 1
options = { hidden_size = 16, layers = 1, heads = 2, intermediate_size = 16, vocab_size = 120 }

[[members]]
name = "b"
backbone = "scratch"
seed = 2
options = { architecture = "roberta", hidden_size = 16, layers = 1, heads = 2, intermediate_size = 16, vocab_size = 120 }
"""
TEXTS = ["an awful, dull film", "a superb film", "flat", "stunning and brilliant, a pleasant surprise"]
TOLERANCE = 1e-5  # float32 logits of the same weights on the same texts; a batch size changes only padding


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """(export folder, its manifest, each member's probabilities on TEXTS)."""
    d = tmp_path_factory.mktemp("untrusted")
    (d / "spec.toml").write_text(SPEC)
    code, out, err = cli("apply", d / "spec.toml", "--store", d / "results.duckdb")
    assert code == 0, err + out
    code, out, err = cli("export", "untrusted", d / "export", "--store", d / "results.duckdb")
    assert code == 0, err + out
    manifest = json.loads((d / "export" / "manifest.json").read_text())
    prediction = load(d / "export").run(TEXTS)
    assert np.allclose(prediction.probs, sum(m["weight"] * prediction.raw_members[m["name"]]
                                             for m in manifest["members"]), atol=1e-6)
    return d / "export", manifest, prediction.raw_members


# -- the mutations ----------------------------------------------------------------------------------------
# Each is (name, function(folder, manifest dict, state) -> None); the function edits the copy in place and
# may change the manifest dict, which is written afterwards. `refresh(folder, manifest, member)` puts the
# edited member's SHA-256 back, as someone hiding an edit would; `state["content"]` maps each member
# folder to the intact member whose model it holds (None: an edit made it some other model).

NUMBERS = [0.0, -0.25, 0.25, 0.5, 0.75, 1.0, 1.5, math.nan, math.inf, -math.inf, 1e308, 5e-324, "0.5", None, True,
           [0.5], {"w": 1}]


def refresh(folder: Path, manifest: dict, member: str) -> None:
    entry = next(m for m in manifest["members"] if m["name"] == member)
    entry["files"] = {f.name: sha256_of(f) for f in sorted((folder / entry["path"]).iterdir())
                      if not f.name.startswith(".")}


@st.composite
def manifest_edits(draw):
    kind = draw(st.sampled_from(["weight", "weights_pair", "delete", "duplicate", "path", "labels", "method",
                                 "batch", "precision", "max_length", "format", "calibration", "extra_key",
                                 "ensemble_weights", "name", "members_type"]))
    member = draw(st.sampled_from(["a", "b"]))
    value = draw(st.sampled_from(NUMBERS))
    pair = draw(st.sampled_from([(0.5, 0.5), (0.2, 0.8), (1.0, 0.0), (0.0, 1.0), (0.3, 0.3), (0.6, 0.6),
                                 (0.25 + 1e-9, 0.75), (0.1, 0.9000001)]))
    key = draw(st.sampled_from(["weight", "path", "name", "checkpoint", "files", "eval_batch_size"]))
    top = draw(st.sampled_from(["labels", "members", "format", "strategy", "ensemble", "run", "max_length"]))
    path = draw(st.sampled_from(["../a", "/etc", "members/../members/a", "members/b", "members/a/../b", "members",
                                 ".", "", "members/c", "plugins", "members/a\x00"]))
    labels = draw(st.sampled_from(["reverse", "rename", "drop", "duplicate", "add", "empty", "not_list"]))
    batch = draw(st.sampled_from([0, -1, 1, 3, 65536, 65537, 10**12, 2.5, "8", None, True]))

    def edit(folder: Path, m: dict, state: dict) -> None:
        entry = next((e for e in m["members"] if e["name"] == member), m["members"][0])
        if kind == "weight":
            entry["weight"] = value
        elif kind == "weights_pair":
            for e, w in zip(m["members"], pair):
                e["weight"] = w
            m["ensemble"]["weights"] = {e["name"]: e["weight"] for e in m["members"]}
        elif kind == "delete":
            if draw_top:
                m.pop(top, None)
            else:
                entry.pop(key, None)
        elif kind == "duplicate":
            m["members"].append(copy.deepcopy(entry))
        elif kind == "path":
            entry["path"] = path
        elif kind == "labels":
            got = list(m["labels"])
            m["labels"] = {"reverse": got[::-1], "rename": ["x"] + got[1:], "drop": got[:-1],
                           "duplicate": got + got[:1], "add": got + ["extra"], "empty": [],
                           "not_list": "abc"}[labels]
        elif kind == "method":
            m["ensemble"]["method"] = draw_method
        elif kind == "batch":
            entry["eval_batch_size"] = batch
        elif kind == "precision":
            entry["precision"] = draw_precision
        elif kind == "max_length":
            m["max_length"] = batch
        elif kind == "format":
            m["format"] = "runner-export-2"
        elif kind == "calibration":
            entry["calibration"] = {"method": "temperature", "temperature": value, "bias": None}
        elif kind == "extra_key":
            m["a_later_key"] = {"x": 1}
            entry["another"] = [1, 2]
        elif kind == "ensemble_weights":
            m["ensemble"]["weights"] = draw_ens
        elif kind == "name":
            entry["name"] = draw_name
        elif kind == "members_type":
            m["members"] = {"a": entry}

    draw_top = draw(st.booleans())
    draw_method = draw(st.sampled_from(["equal", "fit", "given", "single", "mean", None]))
    draw_precision = draw(st.sampled_from(["auto", "fp32", "fp8", "", None]))
    draw_ens = draw(st.sampled_from(["equal", {"a": 0.25, "b": 0.75}, {"a": 0.5, "b": 0.5}, {"a": 1.0}, None, [1]]))
    draw_name = draw(st.sampled_from(["b", "", "../x", "a/b", "c", "x" * 300]))
    return f"manifest:{kind}", edit


@st.composite
def file_edits(draw):
    member = draw(st.sampled_from(["a", "b"]))
    name = draw(st.sampled_from(["model.safetensors", "config.json", "runner.json", "tokenizer.json",
                                 "tokenizer_config.json"]))
    kind = draw(st.sampled_from(["truncate", "flip", "delete", "garbage", "empty", "auto_map", "nan_weights",
                                 "id2label", "label_names", "added_file", "link_out", "member_link_out",
                                 "swap_members", "json_list", "options", "max_length_bad", "dotfile"]))
    at = draw(st.floats(min_value=0, max_value=1, exclude_max=True))
    hide = draw(st.booleans())  # put the edited member's hashes back in the manifest

    def edit(folder: Path, m: dict, state: dict) -> None:
        base = folder / "members" / member
        f = base / name
        if kind == "truncate":
            data = f.read_bytes()
            f.write_bytes(data[:int(len(data) * at)])
        elif kind == "flip":
            data = bytearray(f.read_bytes())
            i = int(len(data) * at)
            data[i] ^= 0x40
            f.write_bytes(bytes(data))
        elif kind == "delete":
            f.unlink()
        elif kind == "garbage":
            f.write_bytes(os.urandom(64))
        elif kind == "empty":
            f.write_bytes(b"")
        elif kind == "json_list":
            f.write_text("[1, 2]")
        elif kind == "auto_map":
            cfg = json.loads((base / "config.json").read_text())
            cfg["auto_map"] = {"AutoModelForSequenceClassification": "modeling_x.Model"}
            (base / "config.json").write_text(json.dumps(cfg))
            (base / "modeling_x.py").write_text(f"open({str(folder / 'RAN')!r}, 'w').write('code ran')\n")
        elif kind == "nan_weights":
            _nan_tensor(base / "model.safetensors")
        elif kind == "id2label":
            cfg = json.loads((base / "config.json").read_text())
            ids = cfg["id2label"]
            cfg["id2label"] = {k: ids[str(len(ids) - 1 - int(k))] for k in ids}
            (base / "config.json").write_text(json.dumps(cfg))
        elif kind == "label_names":
            info = json.loads((base / "runner.json").read_text())
            info["label_names"] = info["label_names"][::-1]
            (base / "runner.json").write_text(json.dumps(info))
        elif kind == "options":
            info = json.loads((base / "runner.json").read_text())
            info["options"] = {"hidden_size": "big"}
            (base / "runner.json").write_text(json.dumps(info))
        elif kind == "max_length_bad":
            info = json.loads((base / "runner.json").read_text())
            info["max_length"] = "long"
            (base / "runner.json").write_text(json.dumps(info))
        elif kind == "added_file":
            (base / "added_tokens.json").write_text('{"zzz": 5}')
        elif kind == "dotfile":
            (base / ".DS_Store").write_bytes(b"\x00\x01")
        elif kind == "link_out":
            outside = folder.parent / f"outside-{name}"
            shutil.copy2(f, outside)
            f.unlink()
            f.symlink_to(outside)
        elif kind == "member_link_out":
            outside = folder.parent / "outside-member"
            shutil.move(base, outside)
            base.symlink_to(outside)
        elif kind == "swap_members":
            tmp = folder / "members" / "tmp"
            shutil.move(folder / "members" / "a", tmp)
            shutil.move(folder / "members" / "b", folder / "members" / "a")
            shutil.move(tmp, folder / "members" / "b")
            state["content"] = {"members/a": state["content"]["members/b"], "members/b": state["content"]["members/a"]}
        if hide and kind in ("truncate", "flip", "garbage", "empty", "added_file", "options"):
            state["content"][f"members/{member}"] = None  # a consistent export of some other model
        if hide and kind not in ("member_link_out", "swap_members") and base.is_dir():
            refresh(folder, m, member)
        elif hide and kind == "swap_members":
            refresh(folder, m, "a")
            refresh(folder, m, "b")

    return f"file:{kind}{':hidden' if hide else ''}", edit


def _nan_tensor(path: Path) -> None:
    """Set the first float32 value of the first float32 tensor of a safetensors file to NaN, in place."""
    data = bytearray(path.read_bytes())
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    for key, t in header.items():
        if key != "__metadata__" and t["dtype"] == "F32":
            start = 8 + n + t["data_offsets"][0]
            data[start:start + 4] = struct.pack("<f", math.nan)
            break
    path.write_bytes(bytes(data))


def _described(manifest: dict, content: dict) -> dict[str, str | None] | None:
    """member name -> the intact member whose model its folder holds (None: some other model), when the
    (mutated) manifest lists members in distinct folders of the export; None when it does not."""
    try:
        paths = {m["name"]: os.path.normpath(m["path"]) for m in manifest["members"]}
        if len(set(paths.values())) != len(paths) or not set(paths.values()) <= set(content):
            return None
        return {name: content[p] for name, p in paths.items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


@budget(70)
@given(edits=st.lists(st.one_of(manifest_edits(), file_edits()), min_size=1, max_size=2),
       damage=st.none() | st.tuples(st.sampled_from(["truncate", "garbage", "list", "empty", "bom"]),
                                    st.floats(min_value=0, max_value=1, exclude_max=True)))
def test_a_mutated_export_predicts_what_its_manifest_says_or_is_refused_naming_a_file(pristine, edits, damage):
    folder, manifest, raw = pristine
    with tempfile.TemporaryDirectory(prefix="runner-untrusted-") as tmp:
        work = Path(tmp) / "export"
        shutil.copytree(folder, work, symlinks=True)
        m = copy.deepcopy(manifest)
        state = {"content": {"members/a": "a", "members/b": "b"}}
        kinds = [w for w, _ in edits]
        for what, edit in edits:
            try:
                edit(work, m, state)
                event(what)
            except (KeyError, TypeError, IndexError, StopIteration, AttributeError, OSError, shutil.Error, ValueError):
                pass  # an earlier edit removed what this one edits
        text = json.dumps(m, indent=2)
        if damage is not None:
            event(f"manifest damaged: {damage[0]}")
            text = {"truncate": text[:int(len(text) * damage[1])], "garbage": "\x00" + text[1:], "list": "[]",
                    "empty": "", "bom": "\ufeff" + text}[damage[0]]
        (work / "manifest.json").write_text(text, encoding="utf-8")
        try:
            prediction = load(work).run(TEXTS)
        except InputError as e:
            message = str(e)
            assert str(work) in message or str(Path(tmp).resolve()) in message, message
            assert "\n\n" not in message.strip(), message
            return
        finally:
            assert not (work / "RAN").exists(), "code from the export ran"
        assert damage is None or damage[0] == "bom", f"{kinds}: loaded a damaged manifest ({damage})"
        held = _described(m, state["content"])
        assert held is not None, f"{kinds}: loaded an export whose manifest describes no ensemble of its folders"
        weights = {e["name"]: float(e["weight"]) for e in m["members"]}
        assert all(math.isfinite(w) and w >= 0 for w in weights.values()) and abs(sum(weights.values()) - 1) < 1e-6, \
            (kinds, weights)
        assert np.isfinite(prediction.probs).all() and np.allclose(prediction.probs.sum(axis=1), 1), kinds
        assert np.allclose(prediction.probs, sum(w * prediction.raw_members[n] for n, w in weights.items()),
                           atol=TOLERANCE), kinds
        for name, intact in held.items():
            if intact is not None:
                assert np.allclose(prediction.raw_members[name], raw[intact], atol=TOLERANCE), (kinds, name)


def test_predict_on_an_export_with_custom_code_is_exit_2_naming_the_config(pristine, tmp_path):
    """The CLI on the case the issue names: a member config with an auto_map and the code beside it, its
    hash put back: exit 2 naming config.json, and the code never runs (no prompt, nothing under $HOME)."""
    folder, manifest, _ = pristine
    work = tmp_path / "export"
    shutil.copytree(folder, work)
    base = work / "members" / "a"
    cfg = json.loads((base / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "modeling_x.Config", "AutoModelForSequenceClassification": "modeling_x.Model"}
    (base / "config.json").write_text(json.dumps(cfg))
    (base / "modeling_x.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').write('ran')\n")
    m = copy.deepcopy(manifest)
    refresh(work, m, "a")
    (work / "manifest.json").write_text(json.dumps(m))
    (tmp_path / "in.csv").write_text("text\na superb film\n")
    code, out, err = cli("predict", work, tmp_path / "in.csv")
    assert code == 2 and str(base / "config.json") in err and "auto_map" in err, err + out
    assert not (tmp_path / "RAN").exists()


@pytest.mark.parametrize("batch_size", [0, -1, 65537, 2.5, "8", True])
def test_load_refuses_a_batch_size_the_cli_would_refuse(pristine, batch_size):
    with pytest.raises(InputError, match="batch_size"):
        load(pristine[0], batch_size=batch_size)
