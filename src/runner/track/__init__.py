"""The user's tracker: a run logged to MLflow or W&B as it trains, the store staying the source of truth.

`[track] to = ["mlflow"]` and/or `["wandb"]` (runner.spec.track). Each member is a run of the tracker
(an MLflow child run, a W&B run in the run's group) with its resolved settings as params and every
stored epoch's metrics at step = epoch; the runner run is a parent run with the spec as params and,
once it has ended, `runner compare`'s table as metrics and the report and table as artifacts.

The numbers logged are the store's by construction: `TrackedStore` (runner.track.session) wraps the
store the driver writes through, and logs an epoch right after it is committed, as read back from the
store, whether the member trains here or in a Ray task. Tags (`runner.run_id`, `runner.spec_hash`,
`runner.dataset_id`, `runner.store`) lead from a tracker run back to the store, and find it again
when a re-run continues. A tracker that fails mid-run is one warning line, never a failed training.
"""

from runner.track.check import check
from runner.track.results import results_dir, table_metrics, write_csv
from runner.track.session import RunTracking, TrackedStore, Tracking

__all__ = ["Tracking", "RunTracking", "TrackedStore", "check", "results_dir", "table_metrics", "write_csv"]
