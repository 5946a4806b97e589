"""Calibrations fitted on stored validation probabilities (runner.posthoc.calibrate): a row per
calibrated checkpoint and method, with the before/after metrics as `<metric>@<method>` rows."""

from __future__ import annotations

from runner.store.connection import now


class Calibrations:
    """Methods of `Store` (runner.store.store): they use its `transaction`, `query` and `query_dicts`."""

    # -- calibrations: fitted on stored validation probabilities (runner.posthoc.calibrate) ---

    def log_calibrations(self, calibrations) -> None:
        """Replace each calibration's `calibrations` row and its `metrics` rows (`<metric>@<method>` and
        `<metric>@none`, epoch NULL), all in one transaction: calibrating again never duplicates a row.
        Each item has run_id, kind, member, checkpoint, method, temperature, bias, valid_log_loss_before,
        valid_log_loss_after and `metric_rows()` -> (split, name, value)."""
        created = now()
        with self.transaction() as con:
            for c in calibrations:
                key = [c.run_id, c.kind, c.member, c.checkpoint]
                where = "run_id = ? AND kind = ? AND member = ? AND checkpoint = ?"
                con.execute(f"DELETE FROM calibrations WHERE {where} AND method = ?", key + [c.method])
                con.execute(
                    "INSERT INTO calibrations (run_id, kind, member, checkpoint, method, temperature, bias, "
                    "valid_log_loss_before, valid_log_loss_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    key + [c.method, float(c.temperature), c.bias, c.valid_log_loss_before, c.valid_log_loss_after,
                           created])
                con.execute(f"DELETE FROM metrics WHERE {where} AND (ends_with(name, ?) OR ends_with(name, '@none'))",
                            key + ["@" + c.method])
                rows = [key + [split, name, float(value)] for split, name, value in c.metric_rows()]
                if rows:
                    con.executemany("INSERT INTO metrics (run_id, kind, member, checkpoint, epoch, split, name, value) "
                                    "VALUES (?, ?, ?, ?, NULL, ?, ?, ?)", rows)


    def calibration_rows(self, run_id: str) -> list[dict]:
        """The run's `calibrations` rows, oldest first."""
        return self.query_dicts("SELECT * FROM calibrations WHERE run_id = ? ORDER BY created_at", [run_id])

    def calibrated_metrics(self, run_id: str) -> dict[tuple[str, str, str], dict[tuple[str, str], float]]:
        """(kind, member, checkpoint) -> {(split, `<metric>@<method>`): value} of a run's calibrations."""
        out: dict[tuple[str, str, str], dict[tuple[str, str], float]] = {}
        for kind, member, checkpoint, split, name, value in self.query(
                "SELECT kind, member, checkpoint, split, name, value FROM metrics WHERE run_id = ? AND name LIKE '%@%'",
                [run_id])[1]:
            out.setdefault((kind, member, checkpoint), {})[(split, name)] = value
        return out

    def has_calibrations(self, run_id: str) -> bool:
        return bool(self.query("SELECT count(*) FROM calibrations WHERE run_id = ?", [run_id])[1][0][0])

    def calibration(self, run_id: str, kind: str, member: str, checkpoint: str,
                    method: str | None = None) -> tuple[float, list[float] | None] | None:
        """(temperature, bias or None) of a calibrated checkpoint or ensemble, the latest when `method`
        is None; None when it was never calibrated."""
        rows = self.query("SELECT temperature, bias FROM calibrations WHERE run_id = ? AND kind = ? AND member = ? "
                          "AND checkpoint = ? AND (? IS NULL OR method = ?) ORDER BY created_at DESC LIMIT 1",
                          [run_id, kind, member, checkpoint, method, method])[1]
        return (float(rows[0][0]), rows[0][1]) if rows else None
