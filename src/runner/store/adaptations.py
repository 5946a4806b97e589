"""Masked-LM adaptations before fine-tuning (runner.train.adapt): each adaptation once per key, its
MLM losses per epoch, and which adaptation each member started from."""

from __future__ import annotations

import json

from runner.store.connection import now


class Adaptations:
    """Methods of `Store` (runner.store.store): they use its `transaction`, `query` and `query_dicts`."""

    # -- adaptations: masked-LM adaptation before fine-tuning (runner.train.adapt) ---------------

    def log_adaptation(self, info: dict, path: str) -> None:
        """An adaptation and its MLM losses per epoch, once per key (a reused adaptation keeps its row)."""
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM adaptations WHERE adapt_key = ?", [info["key"]]).fetchall():
                return
            con.execute("INSERT INTO adaptations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [info["key"], info["backbone"], info["model"], json.dumps(info["settings"]),
                         json.dumps(info["sources"]), info["n_texts"], info["n_heldout"], info["corpus_hash"],
                         path, info.get("seconds"), now()])
            rows = [(info["key"], h["epoch"], split, h[split]) for h in info["history"]
                    for split in ("train", "heldout", "train_running") if h.get(split) is not None]
            if rows:
                con.executemany("INSERT INTO adapt_losses VALUES (?, ?, ?, ?)", rows)

    def set_member_adapt(self, run_id: str, member: str, key: str) -> None:
        with self.transaction() as con:
            con.execute("UPDATE members SET adapt_key = ? WHERE run_id = ? AND member = ?", [key, run_id, member])

    def adapt_keys(self) -> set[str]:
        """Every adaptation key a member of this store started from."""
        return {r[0] for r in self.query("SELECT DISTINCT adapt_key FROM members WHERE adapt_key IS NOT NULL")[1]}
