"""Store migrations m005 to m008: refits, new inputs, calibrations, sweeps and trials, repeats and adaptations.

Never edit one that has shipped (runner.store.migrations says why).
"""

from __future__ import annotations


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


STEPS = [m005_refits_new_inputs_and_calibrations, m006_sweeps_and_trials, m007_repeats, m008_adaptations]
