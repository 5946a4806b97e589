"""The store's schema, as an append-only list of named migrations.

Each migration runs once, in order, and is recorded in `_migrations`; opening a store written by an
older runner applies the ones it lacks. Never edit a migration that has shipped: add a new one and say
in its docstring why it exists. A store that has a migration this runner does not know was written by
a newer runner and is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Callable

MIGRATIONS: list[Callable] = []


def migration(fn: Callable) -> Callable:
    MIGRATIONS.append(fn)
    return fn


@migration
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


@migration
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


@migration
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


@migration
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


@migration
def m005_refits_new_inputs_and_calibrations(con) -> None:
    """What a run becomes after training: refits, predictions on new texts, calibrations.

    - `runs.parent_run_id` / `runs.refit_strategy`: a refit (retrained on train+valid for the number
      of epochs a strategy chose in its parent) is a run of its own, linked to the run it came from.
    - `inputs`: one row per file `runner predict` stored. Its texts go to `examples` (the run's
      `dataset_id`, split `input-<hash>`, the hash of the file's content) and its probabilities to
      `predictions` under the same split, so SQL compares them with test like any other split.
    - `calibrations`: temperature scaling (and an optional per-class bias, a prior correction) fitted
      on the stored validation probabilities of a member's checkpoint or an ensemble, with the
      validation log-loss before and after.
    """
    con.execute(
        """
        ALTER TABLE runs ADD COLUMN parent_run_id VARCHAR;
        ALTER TABLE runs ADD COLUMN refit_strategy VARCHAR;
        CREATE TABLE inputs (
            run_id VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            input_hash VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            rows INTEGER NOT NULL,
            has_labels BOOLEAN NOT NULL,
            strategy VARCHAR NOT NULL,
            calibrated BOOLEAN NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE calibrations (
            run_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            checkpoint VARCHAR NOT NULL,
            method VARCHAR NOT NULL,
            temperature DOUBLE NOT NULL,
            bias DOUBLE[],
            valid_log_loss_before DOUBLE,
            valid_log_loss_after DOUBLE,
            created_at TIMESTAMP NOT NULL
        );
        """
    )


@migration
def m006_sweeps_and_trials(con) -> None:
    """Sweeps: a search over spec keys whose every trial is an ordinary run.

    - `sweeps`: one row per sweep: its id (the spec's name and a hash of the spec without the
      number of trials and the timeout, so that adding trials continues it), the spec, the Optuna
      study's storage, the objective (a selection strategy, on the ensemble or one member) and its
      direction.
    - `trials`: one row per Optuna trial: its number, the run it trained (NULL until created),
      status (running | finished | pruned | failed), the objective's value, the params as JSON.
    - `trial_params`: the params again, one row per param (`value` numeric, `value_text` as TOML
      would print it), so that SQL can group by a param.
    """
    con.execute(
        """
        CREATE TABLE sweeps (
            sweep_id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            spec JSON NOT NULL,
            storage VARCHAR NOT NULL,
            objective VARCHAR NOT NULL,
            objective_member VARCHAR,
            direction VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE trials (
            sweep_id VARCHAR NOT NULL,
            number INTEGER NOT NULL,
            run_id VARCHAR,
            status VARCHAR NOT NULL,
            value DOUBLE,
            params JSON NOT NULL,
            retry_of INTEGER,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP
        );
        CREATE TABLE trial_params (
            sweep_id VARCHAR NOT NULL,
            number INTEGER NOT NULL,
            param VARCHAR NOT NULL,
            value DOUBLE,
            value_text VARCHAR NOT NULL
        );
        """
    )


@migration
def m007_repeats(con) -> None:
    """Seeds as an axis: `repeats = N` trains a spec N times with other member seeds and
    the same data. Each replica is a run; `repeat_group` (the spec's name and a hash of it without the
    seeds) ties them together and `repeat_index` (0 .. N-1) orders them; replica 0 is the run the
    spec makes without `repeats`. NULL for a run that is not part of a group.
    """
    con.execute(
        """
        ALTER TABLE runs ADD COLUMN repeat_group VARCHAR;
        ALTER TABLE runs ADD COLUMN repeat_index INTEGER;
        ALTER TABLE trials ADD COLUMN value_sd DOUBLE;
        ALTER TABLE trials ADD COLUMN repeats INTEGER;
        """
    )


@migration
def m008_adaptations(con) -> None:
    """Task-adaptive pretraining: `[adapt]` trains each member's encoder with masked-LM on
    the task's texts first, cached by content under adapted/<key>/ beside the store (runner.train.adapt).

    - `adaptations`: one row per adaptation key: backbone, model, the adapt settings (texts, extra,
      epochs...), where its texts came from (split or file -> count), corpus size and hash, folder,
      seconds. Several runs and members share a row.
    - `adapt_losses`: the MLM loss per adapt epoch (0 = before adapting) on the held-out slice
      (`heldout`) and on an equal slice of the training texts (`train`), both masked once with the
      adaptation's seed; `train_running` is Trainer's running training loss of the epoch.
    - `members.adapt_key`: the adaptation a member started from (NULL: none).
    """
    con.execute(
        """
        CREATE TABLE adaptations (
            adapt_key VARCHAR PRIMARY KEY,
            backbone VARCHAR NOT NULL,
            model VARCHAR,
            settings JSON NOT NULL,
            sources JSON NOT NULL,
            n_texts INTEGER NOT NULL,
            n_heldout INTEGER NOT NULL,
            corpus_hash VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            seconds DOUBLE,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE adapt_losses (
            adapt_key VARCHAR NOT NULL,
            epoch INTEGER NOT NULL,
            split VARCHAR NOT NULL,
            mlm_loss DOUBLE
        );
        ALTER TABLE members ADD COLUMN adapt_key VARCHAR;
        """
    )



@migration
def m009_confusion(con) -> None:
    """The `confusion` view: how often each true `label` was predicted as `pred`, per run, kind, member,
    checkpoint and split, for predictions of labelled examples (input-<hash> splits too), with the run's
    label names; a pair never seen has no row. The SQL twin of runner.core.maths.confusion."""
    con.execute(
        "CREATE VIEW confusion AS SELECT p.run_id, p.kind, p.member, p.checkpoint, p.split, e.label, p.pred, "
        "r.label_names ->> e.label AS label_name, r.label_names ->> p.pred AS pred_name, count(*) AS n "
        "FROM predictions p JOIN runs r USING (run_id) JOIN examples e ON e.dataset_id = r.dataset_id "
        "AND e.split = p.split AND e.idx = p.idx WHERE e.label IS NOT NULL GROUP BY ALL")
