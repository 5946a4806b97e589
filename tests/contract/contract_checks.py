"""The contract search's four kinds of case, each run through the real CLI in a sandbox and judged by
the oracle: spec fields, data files, stores, command-line arguments."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import contract_strategies as cs
import pytest
from contract_harness import Call, Sandbox, Violation, World, _non_finite, invoke, sandbox, store_bytes
from contract_oracle import (
    common_rules,
    exit2_rules,
    failed_run_rules,
    finished_run_rules,
    home_rule,
    run_ids,
    spec_key_evidence,
    store_rows,
    written_outside,
)

torch = pytest.importorskip("torch")
duckdb = pytest.importorskip("duckdb")


# -- the golden run ----------------------------------------------------------------------------------

GOLDEN_DOC = cs.base_doc("synthetic2")
GOLDEN_DOC["name"] = "golden"
GOLDEN_DOC["data"]["test"] = 0.2
GOLDEN_DOC["swa"] = {"k": 1}


def copy_golden(world: World, sb: Sandbox) -> None:
    shutil.copy2(world.golden_in / "spec.toml", sb.inp / "spec.toml")
    shutil.copytree(world.golden_out, sb.out, dirs_exist_ok=True)


def golden_run_id(world: World) -> str:
    return store_rows(world.golden_out / "results.duckdb", "SELECT run_id FROM runs")[0][0]


def write_base_files(base: str, folder: Path) -> None:
    if base == "csv":
        (folder / "train.csv").write_bytes(cs.csv_bytes(cs.base_rows()))
    elif base == "jsonl":
        (folder / "train.jsonl").write_bytes(cs.jsonl_bytes(cs.base_rows()))


# -- 1. spec fields --------------------------------------------------------------------------------


def check_spec_case(world: World, case: dict) -> list[Violation]:
    with sandbox(world) as sb:
        doc = cs.base_doc(case["base"])
        write_base_files(case["base"], sb.inp)
        applied = cs.apply_ops(doc, case["ops"])
        place_local_models(world, sb, doc)
        text = cs.toml_dumps(doc)
        assert cs.same_value(tomllib.loads(text), doc), "the TOML writer lost something: a test bug"
        spec = sb.inp / "spec.toml"
        spec.write_text(text, encoding="utf-8")
        keys = spec_key_evidence(applied)
        predictable = any(_non_finite(op[2]) for op in applied if op[0] != "del")
        n_members = len(doc["members"]) if isinstance(doc.get("members"), list) else None
        return run_validate_then_apply(world, sb, case, "spec", spec, keys, predictable, n_members, None)


def place_local_models(world: World, sb: Sandbox, doc: dict) -> None:
    """A tiny saved model wherever an `hf` member's `model` points inside the sandbox (m1/bert-base,
    mdl/sub/.., ../), so that members whose names come from odd model paths really train."""
    members = doc.get("members")
    for m in members if isinstance(members, list) else []:
        if not (isinstance(m, dict) and m.get("backbone") == "hf" and isinstance(m.get("model"), str)):
            continue
        model = m["model"]
        if not model or "\x00" in model or len(model) > 200 or model.startswith(("/", "~")):
            continue
        target = Path(os.path.normpath(sb.inp / model))
        if not str(target).startswith(str(sb.root)) or (target / "config.json").exists():
            continue
        os.makedirs(sb.inp / model.rstrip("/").removesuffix(".."), exist_ok=True)  # mdl/sub/.. needs mdl/sub
        target.mkdir(parents=True, exist_ok=True)
        for f in world.tiny_model.iterdir():
            shutil.copy2(f, target / f.name)


def run_validate_then_apply(world, sb, case, kind, spec, keys, predictable, n_members, num_labels):
    v: list[Violation] = []
    # the synthetic loader is the data's "file"; a path given in the spec may be named as given
    given = [op[2] for op in case.get("ops", []) if len(op) > 2 and isinstance(op[2], str) and op[2].strip()]
    given = [g for g in given if len(g.strip()) > 2] + [f for g in given if len(g.strip()) <= 2
                                                        for f in (f"{g}: ", f"'{g}'")]  # "/" alone is no evidence
    names_file = [str(sb.inp), "spec.toml", "synthetic("] + given + [os.path.expanduser(g) for g in given]
    before = sb.snap()
    s0 = store_bytes(sb.store)
    val = invoke(world, ["validate", str(spec)])
    v += common_rules(val, case, kind)
    after = sb.snap()
    v += home_rule(val, case, kind, before, after)
    if val.exit_code == 1:
        v.append(Violation("exit-1-predictable", "validate exited 1: validation has no unpredictable faults", val,
                           case, kind))
    elif val.exit_code == 2:
        v += exit2_rules(val, case, kind, names_file, keys, before, after, s0, store_bytes(sb.store), (str(sb.inp),))
    elif val.exit_code == 0:
        wrote = written_outside(before, after, allowed=set())
        if wrote:
            v.append(Violation("validate-wrote", f"validate wrote files: {wrote[:6]}", val, case, kind))
    if v:
        return v

    before = sb.snap()
    s0 = store_bytes(sb.store)
    runs_before = run_ids(sb.store)
    app = invoke(world, ["apply", str(spec), "--store", str(sb.store)])
    v += common_rules(app, case, kind)
    after = sb.snap()
    v += home_rule(app, case, kind, before, after)
    if val.exit_code == 2 and app.exit_code != 2:
        v.append(Violation("validate-apply-disagree", f"validate rejected the spec but apply exited {app.exit_code}",
                           app, case, kind))
    if app.exit_code == 2:
        if val.exit_code == 0:
            v.append(Violation("validate-apply-disagree", "validate passed but apply rejected the spec (with a fresh "
                               "store): validation is not the dry run of apply", app, case, kind))
        v += exit2_rules(app, case, kind, names_file, keys, before, after, s0, store_bytes(sb.store), (str(sb.inp),))
    elif app.exit_code == 1:
        v += failed_run_rules(app, case, kind, sb.store, runs_before, predictable)
    elif app.exit_code == 0:
        v += finished_run_rules(app, case, kind, sb.store, runs_before, n_members, num_labels)
        wrote = written_outside(before, after, allowed={"out"})
        if wrote:
            v.append(Violation("wrote-outside-store", f"apply wrote outside the store's folder: {wrote[:6]}", app,
                               case, kind))
    return v




# -- 2. data files ---------------------------------------------------------------------------------


def check_data_case(world: World, case: dict) -> list[Violation]:
    with sandbox(world) as sb:
        doc, facts = cs.materialize_data(case, sb.inp)
        spec = sb.inp / "spec.toml"
        spec.write_text(cs.toml_dumps(doc), encoding="utf-8")
        keys = None  # a data problem names its file (checked) and a row or column (not checkable in general)
        return run_validate_then_apply(world, sb, case, "data", spec, keys, False, len(doc["members"]),
                                       facts["num_labels"])


# -- 3. stores -------------------------------------------------------------------------------------

BAD_STORES = {"garbage", "truncated_head", "truncated_half", "sqlite", "foreign", "text", "directory", "wal_garbage"}


def make_store(world: World, sb: Sandbox, kind: str) -> Path:
    golden = world.golden_out / "results.duckdb"
    store = sb.out / "results.duckdb"
    if kind == "none":
        pass
    elif kind == "empty":  # a store with the current schema and no runs: what a first apply starts from
        shutil.copy2(world.golden_out / "results.duckdb", store)
        con = duckdb.connect(str(store))
        tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name != '_migrations'").fetchall()
        for (table,) in tables:
            con.execute(f'DELETE FROM "{table}"')
        con.close()
    elif kind == "golden":
        shutil.copytree(world.golden_out, sb.out, dirs_exist_ok=True)
    elif kind == "garbage":
        store.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(8192)))
    elif kind == "zero_bytes":
        store.write_bytes(b"")
    elif kind == "truncated_head":
        store.write_bytes(golden.read_bytes()[:4096])
    elif kind == "truncated_half":
        data = golden.read_bytes()
        store.write_bytes(data[: len(data) // 2])
    elif kind == "sqlite":
        con = sqlite3.connect(store)
        con.execute("CREATE TABLE runs (run_id TEXT)")
        con.commit()
        con.close()
    elif kind == "foreign":
        con = duckdb.connect(str(store))
        con.execute("CREATE TABLE invoices (id INTEGER, amount DOUBLE)")
        con.close()
    elif kind == "text":
        store.write_text("run,accuracy\nbaseline,0.81\n", encoding="utf-8")
    elif kind == "directory":
        store.mkdir()
    elif kind == "wal_garbage":
        shutil.copytree(world.golden_out, sb.out, dirs_exist_ok=True)
        Path(str(store) + ".wal").write_bytes(b"\x00garbage wal" * 50)
    elif kind == "read_only_folder":
        store = read_only_folder(sb) / "results.duckdb"
    elif kind == "memory":
        store = Path(":memory:")  # relative: a file of that name in the working directory
    elif kind == "missing_folder":
        store = sb.out / "no_such_dir" / "results.duckdb"
    elif kind == "long_name":
        store = sb.out / ("r" * 300 + ".duckdb")
    elif kind == "unicode_name":
        store = sb.out / "결과 ü\u202e.duckdb"
    else:
        raise ValueError(kind)
    return store


def read_only_folder(sb: Sandbox) -> Path:
    """out/ro, a folder nobody may write in: mode 555, or immutable (chattr +i) for root, who ignores modes."""
    ro = sb.out / "ro"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        ro.chmod(0o755)
        ro.rmdir()
        return Path("/sys")  # refuses new files even to root
    return ro


def check_store_case(world: World, case: dict) -> list[Violation]:
    kind, command = case["store"], case["command"]
    with sandbox(world) as sb:
        (sb.inp / "spec.toml").write_text(cs.toml_dumps(dict(GOLDEN_DOC, name="other")), encoding="utf-8")
        store = make_store(world, sb, kind)
        store_abs = sb.cwd / store if not store.is_absolute() else store
        args = {
            "apply": ["apply", str(sb.inp / "spec.toml"), "--store", str(store)],
            "runs": ["runs", "--store", str(store)],
            "sql": ["sql", "SELECT count(*) FROM runs", "--store", str(store)],
            "compare": ["compare", "--store", str(store)],
            "ensemble": ["ensemble", "--store", str(store), "--weights", "1,1"],
            "plot": ["plot", "--store", str(store)],
            "predict": ["predict", golden_run_id(world), str(make_input(sb, "good")[0]), "--store", str(store)],
            "export": ["export", golden_run_id(world), str(sb.out / "model"), "--store", str(store)],
            "calibrate": ["calibrate", "--store", str(store)],
            "refit": ["refit", "--store", str(store)],
        }[command]
        before = sb.snap()
        s0 = store_bytes(store_abs)
        runs_before = {golden_run_id(world)} if kind in ("golden", "wal_garbage") else set()
        call = invoke(world, args)
        after = sb.snap()
        v = common_rules(call, case, "store")
        s1 = store_bytes(store_abs)
        if kind in BAD_STORES | {"read_only_folder", "long_name"} and call.exit_code == 1:
            v.append(Violation("store-exit-code", f"a {kind} store is bad input a check can see: exit 2, not 1", call,
                               case, "store"))
        if kind in BAD_STORES and call.exit_code == 0 and kind != "wal_garbage":
            v.append(Violation("store-accepted", f"a {kind} store was used as a runner store", call, case, "store"))
        if call.exit_code == 1 and kind not in BAD_STORES | {"read_only_folder", "long_name"}:
            v.append(Violation("store-exit-code", f"exit 1 with a {kind} store: a missing or unusable --store is "
                               "bad input a check can see (exit 2)", call, case, "store"))
        if call.exit_code == 2:
            names = [str(store), store.name, "--store"]
            v += exit2_rules(call, case, "store", names, None, before, after, s0, s1)
        if call.exit_code == 0:
            if command == "apply":
                v += finished_run_rules(call, case, "store", store_abs, runs_before, 2, 4)
                allowed = {"out"} | ({"cwd"} if not store.is_absolute() else set())
            else:
                allowed = {"out"} if command in ("plot", "compare", "ensemble", *USE_COMMANDS) else set()
                if command in ("runs", "sql", "plot") and s0 != s1:
                    v.append(Violation("read-changed-store", f"`runner {command}` changed the store", call, case,
                                       "store"))
            wrote = written_outside(before, after, allowed)
            if wrote:
                v.append(Violation("wrote-outside-store", f"wrote: {wrote[:6]}", call, case, "store"))
        v += home_rule(call, case, "store", before, after)
        return v


# -- 4. command-line arguments ---------------------------------------------------------------------


USE_COMMANDS = ("predict", "export", "calibrate", "refit")


def golden_export(world: World) -> Path:
    """The golden run exported (once per session, outside every sandbox; cases only read it)."""
    if world.export is None:
        target = world.root / "golden-export"
        call = invoke(world, ["export", golden_run_id(world), str(target), "--store",
                              str(world.golden_out / "results.duckdb")])
        assert call.exit_code == 0, call.describe()
        world.export = target
    return world.export


def make_input(sb: Sandbox, kind: str) -> tuple[Path, int | None]:
    """An INPUT file for `runner predict` in the sandbox's input folder, and how many rows a correct
    runner predicts from it (None: it must refuse the file)."""
    from runner.data import synthetic

    texts, labels = synthetic.generate(12, seed=99)
    names = [synthetic.LABEL_NAMES[i] for i in labels]
    rows = [{"text": t, "label": n} for t, n in zip(texts, names)]
    folder = sb.inp / "inputs"
    folder.mkdir(exist_ok=True)
    path = folder / {"jsonl": "in.jsonl", "parquet": "in.parquet", "txt": "in.txt", "folder": "a_folder",
                     "unicode": "입력 ü.csv"}.get(kind, f"{kind}.csv")
    n: int | None = len(rows)
    if kind in ("good", "unicode"):
        path.write_bytes(cs.csv_bytes(rows if kind == "good" else
                                      [{"text": f"{r['text']} 정말 좋아요 🎬", "label": r["label"]} for r in rows]))
    elif kind == "unlabelled":
        path.write_bytes(cs.csv_bytes([{"text": t} for t in texts]))
    elif kind == "other_column":
        path.write_bytes(cs.csv_bytes([{"review": t, "label": x} for t, x in zip(texts, names)]))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": texts, "label": names}), path)
    elif kind == "crlf_bom":
        path.write_bytes(b"\xef\xbb\xbf" + cs.csv_bytes(rows).replace(b"\n", b"\r\n"))
    elif kind == "long_text":
        path.write_bytes(cs.csv_bytes([{"text": "a fine film " * 20000, "label": names[0]}] + rows[1:]))
    elif kind == "folder":
        path.mkdir()
        n = None
    elif kind == "missing":
        n = None
    else:
        n = None
        content = {
            "empty": b"", "header_only": b"text,label\n", "no_text_column": cs.csv_bytes([{"body": t} for t in texts]),
            "txt": "\n".join(texts).encode(), "binary": bytes(range(256)) * 4,
            "latin1": "text,label\nun film tr\xe8s b\xeate,weak_negative\n".encode("latin-1"),
            "unknown_label": cs.csv_bytes([{"text": texts[0], "label": "great"}]),
            "some_labels": cs.csv_bytes([rows[0], {"text": texts[1], "label": None}]),
            "empty_text": cs.csv_bytes([rows[0], {"text": "", "label": names[1]}]),
        }[kind]
        path.write_bytes(content)
    return path, n


MUST_REFUSE = {"empty", "header_only", "no_text_column", "folder", "missing", "unknown_label", "some_labels",
               "empty_text", "txt", "{store}", "{spec}"}


def use_args(world: World, sb: Sandbox, case: dict, ro: Path) -> tuple[list[str], list[str]]:
    """Arguments of `runner predict`, `export`, `calibrate` and `refit`, and the words an exit-2 message
    may use to name what is wrong."""
    run_id = golden_run_id(world)
    command = case["command"]
    store = str(sb.store)
    args, names = [command], []

    def val(x: str) -> str:
        return (x.replace("{run}", run_id).replace("{name}", "golden").replace("{run_prefix}", run_id[:8])
                .replace("{read_only}", str(ro)).replace("{store}", store).replace("{spec}", str(sb.inp / "spec.toml")))

    if command == "predict":
        source = {"{export}": lambda: str(golden_export(world)), "{folder}": lambda: str(sb.inp)}.get(
            case["source"], lambda: val(case["source"]))()
        if case["input"] in ("{store}", "{spec}"):
            inp, n = Path(val(case["input"])), None
        else:
            inp, n = make_input(sb, case["input"])
        case["_rows"] = n
        args += [source, str(inp)]
        names += [source, "RUN", "run", str(inp), inp.name, "INPUT"]
        if case.get("text_column") is None and case["input"] == "other_column":
            pass  # the file has `review`, not `text`: a correct runner names the missing column
        elif case.get("text_column") is not None:
            args += ["--text-column", case["text_column"]]
            names += ["--text-column"]
        out = case.get("output")
        if out is not None:
            out = str(inp) if out == "{input}" else val(out)
            args += ["--output", out]
            names += ["--output", out]
        if case.get("predict_format") is not None:
            args += ["--format", case["predict_format"]]
            names += ["--format"]
        if case.get("batch_size") is not None:
            args += ["--batch-size", case["batch_size"]]
            names += ["--batch-size"]
        args += case.get("flags", [])
        names += [f for f in case.get("flags", [])]
    else:
        if case.get("run") is not None:
            args.append(val(case["run"]))
            names += [val(case["run"]), "run"]
    if command == "export":
        d = case["dir"]
        if d == "empty_folder":
            (sb.out / "empty_folder").mkdir()
            target = str(sb.out / "empty_folder")
        elif d == "a_file":
            (sb.out / "a_file").write_text("mine")
            target = str(sb.out / "a_file")
        elif d == "not_empty":
            (sb.out / "not_empty").mkdir()
            (sb.out / "not_empty" / "keep.txt").write_text("mine")
            target = str(sb.out / "not_empty")
        elif d in ("new", "nested/new"):
            target = str(sb.out / d)
        else:
            target = val(d)
        args.append(target)
        names += [target, "DIR"]
    if case.get("strategy") is not None:
        args += ["--strategy", case["strategy"]]
        names += ["--strategy", case["strategy"]]
    if case.get("method") is not None:
        args += ["--method", case["method"]]
        names += ["--method"]
    if case.get("format") is not None:
        args += ["--format", case["format"]]
    if case.get("plugins") is not None:
        p = {"missing": sb.inp / "no_plugins", "file": sb.inp / "spec.toml", "empty": sb.inp / "plugins_empty"}[
            case["plugins"]]
        if case["plugins"] == "empty":
            p.mkdir(exist_ok=True)
        args += ["--plugins", str(p)]
        names += ["--plugins", str(p)]
    args += ["--store", store]
    names += ["--store", store]
    return args, names


def cli_args(world: World, sb: Sandbox, case: dict, ro: Path) -> tuple[list[str], list[str]]:
    """The argument list for a CLI case, and the words an exit-2 message may use to name what is wrong."""
    if case["command"] in USE_COMMANDS:
        return use_args(world, sb, case, ro)
    run_id = golden_run_id(world)
    subst = {"{run}": run_id, "{name}": "golden", "{run_prefix}": run_id[:8]}
    store = str(sb.store)
    command = case["command"]
    args = [command]
    names: list[str] = []

    def val(x: str) -> str:
        for k, s in subst.items():
            x = x.replace(k, s)
        x = x.replace("{read_only}", str(ro))
        x = x.replace("{store}", store).replace("{spec}", str(sb.inp / "spec.toml"))
        return x

    if command in ("validate", "apply") or (command in ("plugins", "schema") and case.get("spec")):
        spec = {
            "golden": str(sb.inp / "spec.toml"),
            "golden_relative": os.path.relpath(sb.inp / "spec.toml", sb.cwd),
            "missing": str(sb.inp / "missing.toml"),
            "directory": str(sb.inp),
            "empty_file": str(sb.inp / "empty.toml"),
            "not_utf8": str(sb.inp / "latin1.toml"),
            "binary": str(sb.inp / "binary.toml"),
            "unicode": str(sb.inp / "스펙 ü.toml"),
        }.get(case["spec"], str(sb.inp / case["spec"]))
        (sb.inp / "empty.toml").write_bytes(b"")
        latin1 = cs.toml_dumps(GOLDEN_DOC).replace('"golden"', '"gölden"').encode("latin-1")
        (sb.inp / "latin1.toml").write_bytes(latin1)
        (sb.inp / "binary.toml").write_bytes(bytes(range(256)))
        shutil.copy2(sb.inp / "spec.toml", sb.inp / "스펙 ü.toml")
        args.append(spec)
        names += [spec, Path(spec).name, "spec"]
        if command == "apply" or (command == "validate" and case.get("store")):
            args += ["--store", store]
        if command == "apply" and case.get("force"):
            args.append("--force")
        for key, flag in (("backend", "--backend"), ("address", "--address"), ("workers", "--workers")):
            if command == "apply" and case.get(key) is not None:
                args += [flag, case[key]]
                names += [flag, case[key]]
        for text in case.get("sets", []):
            args += ["--set", text]
            names += ["--set", text, text.partition("=")[0] or "="]
    if case.get("run") is not None:
        args.append(val(case["run"]))
        names += [val(case["run"]), "run"]
    if case.get("other") is not None:
        args.append(val(case["other"]))
        names += [val(case["other"]), "B", "run"]
    if case.get("dry_run"):
        args.append("--dry-run")
    if case.get("sweep_flag"):
        args.append("--sweep")
        names += ["sweep", "SWEEP"]
    if case.get("query") is not None:
        args.append(case["query"])
        names += ["sql", "query", "SQL"]
    if case.get("weights") is not None:
        args += ["--weights", case["weights"]]
        names += ["--weights", "weights"]
    if case.get("members") is not None:
        args += ["--members", case["members"]]
        names += ["--members", "member"]
    if case.get("checkpoint") is not None:
        args += ["--checkpoint", case["checkpoint"]]
        names += ["--checkpoint", "strategy", "checkpoint"]
    if case.get("name") is not None:
        args += ["--name", case["name"]]
        names += ["--name", "name"]
    if case.get("out") is not None:
        out = val(case["out"])
        if out in ("{user_file}", "{earlier}", "{empty_file}"):  # report/schema --out: an existing file
            suffix = ".html" if command == "report" else ".json"
            target = sb.out / f"existing{suffix}"
            target.write_text({"{user_file}": "<p>my notes</p>\n" if command == "report" else '{"my": 1}\n',
                               "{empty_file}": "", "{earlier}": EARLIER[command]}[out], encoding="utf-8")
            if out == "{user_file}":
                case["_protected"] = (str(target), target.read_bytes())
            out = str(target)
        args += ["--out", out]
        names += ["--out", out]
    if case.get("allow_write"):
        args.append("--allow-write")
    if case.get("all_strategies"):
        args.append("--all")
        names += ["--all", "--strategies"]
    if case.get("classes"):
        args.append("--classes")
        names += ["--classes"]
    for key, option in (("timeout", "--timeout"), ("memory_limit", "--memory-limit"), ("strategies", "--strategies"),
                        ("columns", "--columns"), ("split", "--split")):
        if case.get(key) is not None:
            args += [option, case[key]]
            names += [option, case[key], key.replace("_", " "), key.split("_")[0]]
    if case.get("format") is not None:
        args += ["--format", case["format"]]
    if case.get("plugins") is not None:
        p = {"missing": sb.inp / "no_plugins", "file": sb.inp / "spec.toml", "empty": sb.inp / "plugins_empty"}.get(
            case["plugins"], sb.inp / str(case["plugins"]))
        if case["plugins"] == "empty":
            p.mkdir(exist_ok=True)
        args += ["--plugins", str(p)]
        names += ["--plugins", str(p)]
    if command in ("runs", "compare", "ensemble", "sql", "plot", "sweep", "gc", "report"):
        args += ["--store", store]
    return args, names


# what `runner report` and `runner schema` wrote before (the mark --out looks for), for the {earlier} cases
EARLIER = {"report": '<!DOCTYPE html>\n<html><head><meta name="generator" content="runner report"></head></html>\n',
           "schema": '{"$comment": "runner schema: an earlier one"}\n'}


def check_cli_case(world: World, case: dict) -> list[Violation]:
    with sandbox(world) as sb:
        copy_golden(world, sb)
        ro = read_only_folder(sb)
        args, names = cli_args(world, sb, case, ro)
        before = sb.snap()
        s0 = store_bytes(sb.store)
        runs_before = run_ids(sb.store)
        call = invoke(world, args)
        after = sb.snap()
        s1 = store_bytes(sb.store)
        v = common_rules(call, case, "cli")
        command = case["command"]
        if case.get("_protected"):
            path, content = case["_protected"]
            if Path(path).read_bytes() != content:
                v.append(Violation("overwrote-user-file", f"`runner {command}` replaced {path}, a file it did not "
                                   "write", call, case, "cli"))
        if not (command == "sql" and case.get("allow_write")):  # --allow-write may INSTALL an extension
            v += home_rule(call, case, "cli", before, after)
        if call.exit_code == 1:
            v.append(Violation("exit-1-predictable", f"`runner {command}` exited 1; nothing here is an unpredictable "
                               "fault", call, case, "cli"))
        elif call.exit_code == 2:
            v += exit2_rules(call, case, "cli", names, None, before, after, s0, s1)
        elif call.exit_code == 0:
            allowed: set[str] = set()
            if command == "sql" and case.get("allow_write"):
                allowed = {"in", "out", "cwd", "home"}  # --allow-write lets SQL write files and install extensions
            elif command == "sql" or command in ("runs", "compare", "plot", "report", "plugins", "validate", "sweep",
                                                 "gc", "schema"):
                if s0 != s1:
                    v.append(Violation("read-changed-store", f"`runner {command}` changed the store", call, case,
                                       "cli"))
            if command == "plot":
                out = args[args.index("--out") + 1] if "--out" in args else None
                target = Path(out) if out else sb.out / f"{golden_run_id(world)}.png"
                target = target if target.is_absolute() else sb.cwd / target
                if not target.is_file() or target.stat().st_size == 0:
                    v.append(Violation("exit-0-output", f"plot exited 0 but wrote no file at {target}", call, case,
                                       "cli"))
                allowed = {"out", "cwd"} if out and not Path(out).is_absolute() else {"out"}
                if out and Path(out).is_absolute() and not str(target).startswith(str(sb.out)):
                    allowed = {"out", "in", "cwd"}
            if command == "ensemble":
                allowed = {"out"}
                v += ensemble_rows_rules(call, case, sb.store)
            if command in ("report", "schema"):
                v += output_rules(call, case, sb, args, golden_run_id(world))
                out = args[args.index("--out") + 1] if "--out" in args else None
                allowed = {"out", "cwd"} if out and not Path(out).is_absolute() else {"out"}
            if command in USE_COMMANDS:
                allowed = {"out", "cwd"} if command in ("predict", "export") else {"out"}
                v += use_rules(call, case, sb, args, s0, s1)
            if command == "apply":
                allowed = {"out"}
                if case.get("force"):
                    v += finished_run_rules(call, case, "cli", sb.store, runs_before, 2, 4)
                elif run_ids(sb.store) != runs_before and not case.get("sets"):  # --set may name another spec
                    v.append(Violation("exit-0-store", "apply of a finished spec started a new run without --force",
                                       call, case, "cli"))
            wrote = written_outside(before, after, allowed)
            if wrote:
                v.append(Violation("wrote-outside-store", f"wrote: {wrote[:6]}", call, case, "cli"))
        return v


def output_rules(call: Call, case, sb: Sandbox, args: list[str], run_id: str) -> list[Violation]:
    """Exit 0 of report/schema: the page or the schema where --out (or the default) says, and what it is."""
    import json as _json

    out = args[args.index("--out") + 1] if "--out" in args else None
    if case["command"] == "report":
        target = Path(out) if out else sb.out / f"{run_id}.html"
        target = target if target.is_absolute() else sb.cwd / target
        ok = target.is_file() and b'<meta name="generator" content="runner report">' in target.read_bytes()[:2048]
        detail = f"report exited 0 but {target} is not a report"
    elif out is None:
        try:
            ok = _json.loads(call.stdout).get("title") == "runner spec"
        except ValueError:
            ok = False
        detail = "schema exited 0 but printed no schema"
    else:
        target = Path(out) if Path(out).is_absolute() else sb.cwd / out
        ok = target.is_file() and _json.loads(target.read_text(encoding="utf-8")).get("title") == "runner spec"
        detail = f"schema exited 0 but {target} holds no schema"
    return [] if ok else [Violation("exit-0-output", detail, call, case, "cli")]


def _rows_written(path: Path, fmt: str | None) -> int | None:
    """Rows in a predictions file (csv, jsonl or parquet, told by --format or the content)."""
    data = path.read_bytes()
    if data.startswith(b"PAR1"):
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    lines = data.decode("utf-8").splitlines()
    return len(lines) - 1 if lines and lines[0].startswith("pred_label,") else len(lines)


def use_rules(call: Call, case, sb: Sandbox, args: list[str], s0, s1) -> list[Violation]:
    """Exit 0 of predict/export/calibrate/refit: what each must have written, and nothing it must not."""
    v: list[Violation] = []
    command = case["command"]

    def bad(rule: str, detail: str) -> None:
        v.append(Violation(rule, detail, call, case, "cli"))

    if command == "predict":
        flags = case.get("flags", [])
        column = case.get("text_column")
        refuse = case["input"] in MUST_REFUSE or (column not in (None, "text") and not (
            column == "review" and case["input"] == "other_column")) or (
            case["input"] == "other_column" and column != "review")
        if refuse:
            bad("accepted-bad-input", f"predict exited 0 on input {case['input']!r} with --text-column {column!r}")
        n = case.get("_rows")
        out = args[args.index("--output") + 1] if "--output" in args else None
        if out is None:
            lines = call.stdout.splitlines()
            got = len(lines) - 1 if lines and lines[0].startswith("pred_label,") else len(lines)
        else:
            target = Path(out) if Path(out).is_absolute() else sb.cwd / out
            got = _rows_written(target, case.get("predict_format")) if target.is_file() else None
        if n is not None and got != n:
            bad("exit-0-output", f"predict exited 0 but wrote {got} rows for {n} input rows")
        from_store = "--no-store" not in flags and case["source"] not in ("{export}", "{folder}", "{spec}",
                                                                         "{store}")
        if from_store:
            stored = store_rows(sb.store, "SELECT count(*) FROM inputs")[0][0]
            if stored < 1:
                bad("exit-0-store", "predict of a run exited 0 but stored no `inputs` row")
            v += ensemble_rows_rules(call, case, sb.store)
        elif s0 != s1:
            bad("read-changed-store", "predict with --no-store or from an export changed the store")
    elif command == "export":
        target = Path(args[2]) if Path(args[2]).is_absolute() else sb.cwd / args[2]
        manifest = target / "manifest.json"
        if not manifest.is_file():
            bad("exit-0-output", f"export exited 0 but {manifest} is missing")
        elif [p for p in target.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]:
            bad("exit-0-output", "an export holds a pickle")
        if s0 != s1:
            bad("read-changed-store", "export changed the store")
    elif command == "calibrate":
        n, finite = store_rows(sb.store, "SELECT count(*), coalesce(bool_and(isfinite(temperature) AND temperature "
                                         "> 0), true) FROM calibrations")[0]
        if n < 1 or not finite:
            bad("exit-0-store", f"calibrate exited 0 with {n} calibrations stored (finite positive T: {finite})")
    elif command == "refit":
        rows = store_rows(sb.store, "SELECT status FROM runs WHERE parent_run_id IS NOT NULL")
        if not rows or any(r[0] != "finished" for r in rows):
            bad("exit-0-store", f"refit exited 0 but its runs are {rows}")
        v += ensemble_rows_rules(call, case, sb.store)
    return v


def ensemble_rows_rules(call: Call, case, store: Path) -> list[Violation]:
    """Every stored ensemble has finite probabilities summing to 1, as many per row as the run has labels."""
    rows = store_rows(store, """
        SELECT p.checkpoint, min(len(p.probs)), max(len(p.probs)),
               bool_and(isfinite(list_sum(p.probs)) AND list_min(p.probs) >= 0),
               max(abs(list_sum(p.probs) - 1)), json_array_length(any_value(r.label_names))
        FROM predictions p JOIN runs r USING (run_id) WHERE p.member = 'ensemble' GROUP BY p.checkpoint""")
    for checkpoint, lo, hi, finite, off, k in rows:
        if lo != k or hi != k or not finite or not off <= 1e-3:
            return [Violation("exit-0-store", f"ensemble {checkpoint!r}: {lo}..{hi} probabilities for {k} labels, "
                              f"finite={finite}, sum off by {off}", call, case, "cli")]
    return []


