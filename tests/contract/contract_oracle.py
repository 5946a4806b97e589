"""The contract search's oracle: the rules a command's ending must follow (exit codes, one paragraph
naming file and key, nothing written on exit 2, $HOME untouched, a finished run's rows)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from contract_harness import CALL_TIMEOUT_S, Call, Hang, Violation, changes

torch = pytest.importorskip("torch")
duckdb = pytest.importorskip("duckdb")


# -- the oracle ------------------------------------------------------------------------------------

PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def common_rules(call: Call, case, kind: str) -> list[Violation]:
    v = []
    if isinstance(call.exception, Hang):
        return [Violation("hang", f"the command did not finish within {CALL_TIMEOUT_S} s", call, case, kind)]
    if call.escaped:
        v.append(Violation("exception-escaped", f"{type(call.exception).__name__} escaped the CLI", call, case, kind))
    if call.exit_code not in (0, 1, 2):
        v.append(Violation("exit-code", f"exit code {call.exit_code}", call, case, kind))
    if "Traceback (most recent call last)" in call.shown:
        v.append(Violation("traceback-on-screen", "a Python traceback was printed", call, case, kind))
    if "internal error" in call.stderr.lower():
        v.append(Violation("internal-error", "an unexpected exception reached the user", call, case, kind))
    return v


def one_paragraph(text: str) -> bool:
    return bool(text.strip()) and not PARAGRAPH_BREAK.search(text.strip())


def exit2_rules(call: Call, case, kind: str, names_file: list[str], names_key: list[str] | None,
                before: dict, after: dict, store_before, store_after, data_dirs: tuple = ()) -> list[Violation]:
    """Exit 2: one paragraph naming the file and the key (a data file named counts as naming where the
    problem is: a data error names its file and a row or column), and nothing written."""
    v = []
    err = call.stderr
    if not one_paragraph(err):
        v.append(Violation("exit-2-message", "the message is not one paragraph", call, case, kind))
    if names_file and not any(n and n in err for n in names_file):
        v.append(Violation("exit-2-message", f"the message names none of {names_file}", call, case, kind))
    data_named = any(f"{sb_in}/" in err and f"{sb_in}/spec.toml" not in err for sb_in in data_dirs)
    if names_key and not data_named and not any(k and k in err for k in names_key):
        v.append(Violation("exit-2-message", f"the message names no key among {names_key}", call, case, kind))
    if store_before != store_after:
        v.append(Violation("exit-2-wrote", "the store changed (or was created)", call, case, kind))
    wrote = [f"{area}: {c}" for area in ("in", "out", "cwd") for c in changes(before[area], after[area])]
    wrote += [f"created {k} beside the sandbox folders" for k in after["root"] if k not in before["root"]]
    if wrote:
        v.append(Violation("exit-2-wrote", f"wrote before failing: {wrote[:6]}", call, case, kind))
    return v


def home_rule(call: Call, case, kind: str, before: dict, after: dict) -> list[Violation]:
    wrote = changes(before["home"], after["home"])
    return [Violation("wrote-home", f"wrote into $HOME: {wrote[:6]}", call, case, kind)] if wrote else []


def written_outside(before: dict, after: dict, allowed: set[str]) -> list[str]:
    return ([f"{area}: {c}" for area in ("in", "out", "cwd") if area not in allowed
             for c in changes(before[area], after[area])]
            + [f"created {k} beside the sandbox folders" for k in after["root"] if k not in before["root"]])


def store_rows(path: Path, sql: str, params=()) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def run_ids(path: Path) -> set[str]:
    try:
        if not path.is_file():
            return set()
        return {r[0] for r in store_rows(path, "SELECT run_id FROM runs")}
    except (duckdb.Error, OSError):
        return set()


def finished_run_rules(call: Call, case, kind: str, store: Path, runs_before: set[str], n_members: int | None,
                       num_labels: int | None, new_run: bool = True) -> list[Violation]:
    """After an `apply` that exited 0: one finished run with complete, well-formed predictions."""

    def bad(detail):
        return [Violation("exit-0-store", detail, call, case, kind)]

    if not store.is_file():
        return bad(f"exit 0 but there is no store file at {store}")
    try:
        runs = store_rows(store, "SELECT run_id, status, label_names, dataset_id FROM runs")
    except duckdb.Error as e:
        return bad(f"exit 0 but the store cannot be read: {e}")
    new = [r for r in runs if r[0] not in runs_before]
    if new_run and len(new) != 1:
        return bad(f"exit 0 but {len(new)} new runs in the store (expected 1)")
    if not new:
        return []
    run_id, status, label_names, dataset_id = new[0]
    if status != "finished":
        return bad(f"exit 0 but run {run_id} is {status!r}")
    k = len(json.loads(label_names)) if label_names else None
    if num_labels is not None and k != num_labels:
        return bad(f"the run has {k} label names; the data has {num_labels} classes")
    members = store_rows(store, "SELECT member, status FROM members WHERE run_id = ?", [run_id])
    if n_members is not None and len(members) != n_members:
        return bad(f"the spec has {n_members} members; the store holds {len(members)}: {members}")
    if any(s != "finished" for _, s in members):
        return bad(f"exit 0 with unfinished members: {members}")
    n_valid = store_rows(store, "SELECT count(*) FROM examples WHERE dataset_id = ? AND split = 'valid'",
                         [dataset_id])[0][0]
    for member, _ in members:
        rows = store_rows(store, """
            SELECT checkpoint, count(*), min(len(probs)), max(len(probs)),
                   bool_and(isfinite(list_sum(probs)) AND list_min(probs) >= 0), max(abs(list_sum(probs) - 1))
            FROM predictions WHERE run_id = ? AND member = ? AND split = 'valid' GROUP BY checkpoint""",
                          [run_id, member])
        if not rows:
            return bad(f"member {member} has no validation predictions")
        for checkpoint, n, lo, hi, finite, off in rows:
            if n != n_valid:
                return bad(f"{member}/{checkpoint}: {n} validation predictions for {n_valid} examples")
            expect = num_labels if num_labels is not None else k
            if lo != expect or hi != expect:
                return bad(f"{member}/{checkpoint}: {lo}..{hi} probabilities per row, expected {expect}")
            if not finite or not off <= 1e-3:  # (a NaN is not <= anything)
                return bad(f"{member}/{checkpoint}: probabilities not finite or not summing to 1 (off by {off})")
    # each stored probability belongs to its own example: accuracy recomputed from the rows and the
    # examples' labels is the accuracy metric stored with them (an evaluation in another order is not)
    off = store_rows(store, """
        SELECT p.member, p.checkpoint, p.split, avg((p.pred = e.label)::INT) AS acc, any_value(m.value) AS stored
        FROM predictions p JOIN examples e ON e.dataset_id = ? AND e.split = p.split AND e.idx = p.idx
        JOIN metrics m ON m.run_id = p.run_id AND m.kind = p.kind AND m.member = p.member
             AND m.checkpoint = p.checkpoint AND m.split = p.split AND m.name = 'accuracy'
        WHERE p.run_id = ? AND p.kind = 'member' AND e.label IS NOT NULL GROUP BY ALL
        HAVING abs(avg((p.pred = e.label)::INT) - any_value(m.value)) > 1e-6""", [dataset_id, run_id])
    if off:
        return bad(f"stored predictions disagree with their stored accuracy (misaligned rows?): {off[:3]}")
    return []


def failed_run_rules(call: Call, case, kind: str, store: Path, runs_before: set[str], predictable: bool):
    """After an `apply` that exited 1: allowed only for a loss gone non-finite that no check could see."""
    err = call.stderr.lower()
    unpredictable = re.search(r"\b(nan|inf|-inf|non-finite|not finite)\b", err)
    new = []
    if store.is_file():
        try:
            new = [r for r in store_rows(store, "SELECT run_id, status FROM runs") if r[0] not in runs_before]
        except duckdb.Error:
            pass
    if not unpredictable:
        return [Violation("exit-1-predictable", "exit 1 for a failure that is not a non-finite loss", call, case, kind)]
    if predictable:
        return [Violation("exit-1-predictable", "exit 1 (loss became non-finite) for a spec value that a check "
                          "could reject (a non-finite or overflowing number)", call, case, kind)]
    if len(new) != 1 or new[0][1] != "failed":
        return [Violation("exit-1-state", f"exit 1 but the new runs are {new} (expected one 'failed')", call, case,
                          kind)]
    failed = store_rows(store, "SELECT member FROM members WHERE run_id = ? AND status = 'failed'", [new[0][0]])
    if not failed:
        return [Violation("exit-1-state", "exit 1 but no member is marked failed", call, case, kind)]
    return []


GENERIC_KEYS = {"name", "seed", "options", "train", "loss", "model", "data", "members", "k", "test", "valid", "label",
                "text", "source", "labels", "metric", "weights", "checkpoint", "backbone", "ensemble", "swa",
                "selection", "", "a", "b", "x"}


def loc(path: list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def key_tokens(path: list) -> list[str]:
    """How a message may name the key at `path`: its dotted location, `[table].key`, `'key'`, or a
    distinctive key name. Empty for a top-level key named "" (there is nothing to show)."""
    where = loc(path)
    last = path[-1] if path else ""
    if not where or (isinstance(last, str) and (not last or not last.isprintable())):
        return []  # "" or a key with control characters: the terminal shows nothing to match
    tokens = [where]
    if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], str):
        tokens.append(f"[{path[0]}].{loc(path[1:])}")
    if isinstance(last, str):
        tokens.append(f"'{last}'")
        if last not in GENERIC_KEYS and len(last) >= 3 and last.isprintable():
            tokens.append(last)
    return tokens


def related_tokens(path: list) -> list[str]:
    """Keys a correct message may name instead, when the change makes another key wrong: a new
    dataset source makes its options and paths wrong, a new backbone its options and model."""
    where = loc(path)
    if where == "data.source":
        return ["data.options", "data.train", "[data].train", "data.valid", "data.test"]
    if len(path) == 3 and path[0] == "members" and path[2] in ("backbone", "name", "model"):
        return [f"members[{path[1]}].options", f"members[{path[1]}].model", f"members[{path[1]}].name"]
    if where in ("loss.name", "loss") or (len(path) >= 3 and path[0] == "members" and path[2] == "loss"):
        return ["loss.", f"members[{path[1]}].loss" if path[0] == "members" else "loss:"]
    if where in ("train.epochs", "swa.k") or (len(path) >= 4 and path[2] == "train" and path[3] == "epochs"):
        return ["swa.k", "train.epochs"]
    if where == "members" or (path and path[0] == "members" and len(path) <= 2):
        return ["members"]
    return []


def spec_key_evidence(applied: list) -> list[str] | None:
    """Tokens one of which an exit-2 message must contain; None when some change cannot be named."""
    tokens: list[str] = []
    for op in applied:
        t = key_tokens(op[1])
        if not t:
            return None
        tokens += t + related_tokens(op[1])
    return tokens


