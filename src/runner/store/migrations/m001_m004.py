"""Store migrations m001 to m004: the first schema (runs, members, epochs, predictions and their
views), SWA and ensembles.

Never edit one that has shipped (runner.store.migrations says why).
"""

from __future__ import annotations


def m001_initial(con) -> None:
    """Runs, members, examples, long-format metrics and per-example predictions.

    Metrics are long (one row per value) so that a new metric or split needs no migration; the
    friendly wide shape is a view (m002). No primary keys on the big tables: an index would slow the
    batched inserts, and the store deletes a checkpoint's rows before writing them again instead.
    """
    con.execute(
        """
        CREATE TABLE runs (
            run_id VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            spec JSON NOT NULL,
            spec_hash VARCHAR NOT NULL,
            dataset_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP
        );
        CREATE TABLE members (
            run_id VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            backbone VARCHAR NOT NULL,
            model VARCHAR,
            seed BIGINT NOT NULL,
            status VARCHAR NOT NULL
        );
        CREATE TABLE examples (
            dataset_id VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            text VARCHAR NOT NULL,
            label INTEGER
        );
        CREATE TABLE metrics (
            run_id VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            checkpoint VARCHAR NOT NULL,
            epoch INTEGER,
            split VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            value DOUBLE
        );
        CREATE TABLE predictions (
            run_id VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            checkpoint VARCHAR NOT NULL,
            epoch INTEGER,
            split VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            pred SMALLINT NOT NULL,
            probs FLOAT[] NOT NULL
        );
        """
    )


def m002_views_and_member_details(con) -> None:
    """The wide `epochs` view and the `selections` view, plus member details found useful in use.

    `members` gains the label names, the selected checkpoint, an error message for failed members and
    timestamps; `runs` gains an error message. Ties in a selection go to the earliest epoch, as
    Hugging Face Trainer's best-model tracking does (a later epoch must be strictly better).
    """
    con.execute(
        """
        ALTER TABLE members ADD COLUMN options JSON;
        ALTER TABLE members ADD COLUMN selected_checkpoint VARCHAR;
        ALTER TABLE members ADD COLUMN error VARCHAR;
        ALTER TABLE members ADD COLUMN started_at TIMESTAMP;
        ALTER TABLE members ADD COLUMN finished_at TIMESTAMP;
        ALTER TABLE runs ADD COLUMN label_names JSON;
        ALTER TABLE runs ADD COLUMN error VARCHAR;

        CREATE VIEW epochs AS
        SELECT
            run_id, member, epoch,
            max(value) FILTER (WHERE split = 'train' AND name = 'loss') AS train_loss,
            max(value) FILTER (WHERE split = 'valid' AND name = 'loss') AS eval_loss,
            max(value) FILTER (WHERE split = 'valid' AND name = 'accuracy') AS eval_accuracy,
            max(value) FILTER (WHERE split = 'valid' AND name = 'f1_macro') AS eval_f1_macro,
            max(value) FILTER (WHERE split = 'test' AND name = 'loss') AS test_loss,
            max(value) FILTER (WHERE split = 'test' AND name = 'accuracy') AS test_accuracy,
            max(value) FILTER (WHERE split = 'test' AND name = 'f1_macro') AS test_f1_macro
        FROM metrics
        WHERE checkpoint = 'epoch-' || epoch
        GROUP BY run_id, member, epoch;

        CREATE VIEW selections AS
        WITH ranked AS (
            SELECT
                run_id, member, epoch,
                row_number() OVER (PARTITION BY run_id, member ORDER BY epoch DESC) AS r_last,
                row_number() OVER (PARTITION BY run_id, member ORDER BY eval_loss ASC NULLS LAST, epoch) AS r_loss,
                row_number() OVER (PARTITION BY run_id, member ORDER BY eval_accuracy DESC NULLS LAST, epoch) AS r_acc,
                row_number() OVER (PARTITION BY run_id, member ORDER BY eval_f1_macro DESC NULLS LAST, epoch) AS r_f1
            FROM epochs
        )
        SELECT run_id, member, 'last' AS strategy, 'epoch-' || epoch AS checkpoint, epoch FROM ranked WHERE r_last = 1
        UNION ALL
        SELECT run_id, member, 'best_eval_loss', 'epoch-' || epoch, epoch FROM ranked WHERE r_loss = 1
        UNION ALL
        SELECT run_id, member, 'best_eval_accuracy', 'epoch-' || epoch, epoch FROM ranked WHERE r_acc = 1
        UNION ALL
        SELECT run_id, member, 'best_eval_f1_macro', 'epoch-' || epoch, epoch FROM ranked WHERE r_f1 = 1
        UNION ALL
        SELECT DISTINCT run_id, member, 'swa', 'swa', NULL::INTEGER FROM metrics
        WHERE checkpoint = 'swa' AND member <> 'ensemble';
        """
    )


def m003_swa_and_ensembles(con) -> None:
    """SWA bookkeeping and ensembles.

    `members.swa_epochs` records which epoch checkpoints were averaged (fewer than K when early
    stopping came first). `ensemble_weights` keeps the weight of each member in each ensemble (an
    ensemble is `member = 'ensemble'` in metrics/predictions, its checkpoint named after the strategy
    it was built from). `selections` is recreated to list the ensembles too.
    """
    con.execute(
        """
        ALTER TABLE members ADD COLUMN swa_epochs INTEGER[];
        CREATE TABLE ensemble_weights (
            run_id VARCHAR NOT NULL,
            ensemble VARCHAR NOT NULL,
            strategy VARCHAR NOT NULL,
            method VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            member_checkpoint VARCHAR NOT NULL,
            weight DOUBLE NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        DROP VIEW selections;
        CREATE VIEW selections AS
        WITH ranked AS (
            SELECT
                run_id, member, epoch,
                row_number() OVER (PARTITION BY run_id, member ORDER BY epoch DESC) AS r_last,
                row_number() OVER (PARTITION BY run_id, member ORDER BY eval_loss ASC NULLS LAST, epoch) AS r_loss,
                row_number() OVER (PARTITION BY run_id, member ORDER BY eval_accuracy DESC NULLS LAST, epoch) AS r_acc,
                row_number() OVER (PARTITION BY run_id, member ORDER BY eval_f1_macro DESC NULLS LAST, epoch) AS r_f1
            FROM epochs
        )
        SELECT run_id, member, 'last' AS strategy, 'epoch-' || epoch AS checkpoint, epoch FROM ranked WHERE r_last = 1
        UNION ALL
        SELECT run_id, member, 'best_eval_loss', 'epoch-' || epoch, epoch FROM ranked WHERE r_loss = 1
        UNION ALL
        SELECT run_id, member, 'best_eval_accuracy', 'epoch-' || epoch, epoch FROM ranked WHERE r_acc = 1
        UNION ALL
        SELECT run_id, member, 'best_eval_f1_macro', 'epoch-' || epoch, epoch FROM ranked WHERE r_f1 = 1
        UNION ALL
        SELECT DISTINCT run_id, member, 'swa', 'swa', NULL::INTEGER FROM metrics
        WHERE checkpoint = 'swa' AND member <> 'ensemble'
        UNION ALL
        SELECT DISTINCT run_id, member, checkpoint, checkpoint, NULL::INTEGER FROM metrics
        WHERE member = 'ensemble'
          AND checkpoint IN ('last', 'best_eval_loss', 'best_eval_accuracy', 'best_eval_f1_macro', 'swa');
        """
    )


def m004_ensembles_as_their_own_kind_and_selections_from_the_registry(con) -> None:
    """Ensembles get their own identity, and `selections` becomes a table filled by the strategies.

    Until now an ensemble was stored as a member named `ensemble` (its checkpoint the ensemble's
    name), so a real member called `ensemble` collided with it. `metrics` and `predictions` gain
    `kind` ('member' or 'ensemble'); an ensemble's rows have `member` = its name (`ensemble` for the
    spec's own) and `checkpoint` = the strategy it was built from, and `ensemble_weights.ensemble`
    takes the same short name. Old ensemble rows are converted through `ensemble_weights`, which names
    each ensemble's strategy.

    Selection strategies are registered plugins (Python functions), so `selections` cannot stay a
    SQL view with one copied block per strategy: it becomes a table that runner fills when a member
    finishes, and for a strategy registered later, when a command first needs it. Its rows for real
    members are kept. `epochs` is recreated to leave ensembles out and to show `log_loss`; runner
    adds columns for plugin metrics when it opens the store to write.
    """
    con.execute(
        """
        CREATE TEMP TABLE old_selections AS
        SELECT s.run_id, s.member, s.strategy, s.checkpoint, s.epoch FROM selections s
        WHERE EXISTS (SELECT 1 FROM members m WHERE m.run_id = s.run_id AND m.member = s.member)
          AND s.checkpoint IS NOT NULL AND (s.member <> 'ensemble' OR s.checkpoint LIKE 'epoch-%');
        DROP VIEW selections;
        DROP VIEW epochs;

        ALTER TABLE metrics ADD COLUMN kind VARCHAR DEFAULT 'member';
        ALTER TABLE predictions ADD COLUMN kind VARCHAR DEFAULT 'member';

        CREATE TEMP TABLE old_ensembles AS
        SELECT DISTINCT run_id, ensemble AS old_name, strategy,
               CASE WHEN ensemble = strategy THEN 'ensemble'
                    WHEN starts_with(ensemble, strategy || '/') THEN substr(ensemble, length(strategy) + 2)
                    ELSE ensemble END AS new_name
        FROM ensemble_weights;

        UPDATE metrics SET kind = 'ensemble', member = e.new_name, checkpoint = e.strategy
        FROM old_ensembles e
        WHERE metrics.run_id = e.run_id AND metrics.member = 'ensemble' AND metrics.checkpoint = e.old_name;
        UPDATE predictions SET kind = 'ensemble', member = e.new_name, checkpoint = e.strategy
        FROM old_ensembles e
        WHERE predictions.run_id = e.run_id AND predictions.member = 'ensemble' AND predictions.checkpoint = e.old_name;
        UPDATE ensemble_weights SET ensemble = e.new_name
        FROM old_ensembles e
        WHERE ensemble_weights.run_id = e.run_id AND ensemble_weights.ensemble = e.old_name;

        CREATE TABLE selections (
            run_id VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            strategy VARCHAR NOT NULL,
            checkpoint VARCHAR NOT NULL,
            epoch INTEGER
        );
        INSERT INTO selections SELECT * FROM old_selections;
        DROP TABLE old_selections;
        DROP TABLE old_ensembles;

        CREATE VIEW epochs AS
        SELECT
            run_id, member, epoch,
            max(value) FILTER (WHERE split = 'train' AND name = 'loss') AS train_loss,
            max(value) FILTER (WHERE split = 'valid' AND name = 'loss') AS eval_loss,
            max(value) FILTER (WHERE split = 'valid' AND name = 'accuracy') AS eval_accuracy,
            max(value) FILTER (WHERE split = 'valid' AND name = 'f1_macro') AS eval_f1_macro,
            max(value) FILTER (WHERE split = 'valid' AND name = 'log_loss') AS eval_log_loss,
            max(value) FILTER (WHERE split = 'test' AND name = 'loss') AS test_loss,
            max(value) FILTER (WHERE split = 'test' AND name = 'accuracy') AS test_accuracy,
            max(value) FILTER (WHERE split = 'test' AND name = 'f1_macro') AS test_f1_macro,
            max(value) FILTER (WHERE split = 'test' AND name = 'log_loss') AS test_log_loss
        FROM metrics
        WHERE kind = 'member' AND checkpoint = 'epoch-' || epoch
        GROUP BY run_id, member, epoch;
        """
    )


STEPS = [m001_initial, m002_views_and_member_details, m003_swa_and_ensembles, m004_ensembles_as_their_own_kind_and_selections_from_the_registry]
