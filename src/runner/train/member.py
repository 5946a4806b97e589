"""Training one member with Hugging Face `Trainer`, storing every epoch as it goes.

`train_member` builds what Trainer needs (runner.train.build), adapts the encoder first when the
spec asks (runner.train.adapt), lets Trainer train with an evaluation and a checkpoint every epoch
(runner.train.callback stores each), averages the last K checkpoints (runner.train.swa) and copies
the selected epoch out (runner.store.checkpoints).
"""

from __future__ import annotations

from runner.core.records import EpochRecord, MemberHistory
from runner.core.selection import best_epoch
from runner.errors import TrainingError
from runner.store import checkpoints
from runner.train import ranks
from runner.train.adapt_train import ensure
from runner.train.build import make_trainer, prepare_member
from runner.train.callback import StoreCallback
from runner.train.job import MemberJob, write_member_info
from runner.train.swa import run_swa


def train_member(job: MemberJob) -> int:
    """Train one member; returns the selected epoch. Raises TrainingError on a non-finite loss."""
    m, resolved, data = job.member, job.resolved, job.data
    swa_k = resolved.spec.swa.k
    key = f"eval_{resolved.metric}"

    def on_epoch(record: EpochRecord) -> None:
        error = None
        if ranks.writes():  # hooks, progress and a sweep's pruner run where the store is written
            try:
                job.registry.hook.on_epoch_end(run_id=job.run_id, member=m.name, epoch=record.epoch,
                                               metrics=dict(record.metrics))
                if job.progress is not None:
                    job.progress.epoch_done(m.name, record.epoch, dict(record.metrics), resolved.metric)
                if job.on_epoch is not None:
                    job.on_epoch(m.name, record)
            except Exception as e:
                if not ranks.distributed():
                    raise
                error = e
        error = ranks.agree(error)  # under torchrun, a pruned trial stops every rank at the same epoch
        if error is not None:
            raise error

    adapted = None
    if job.adaptation is not None:  # from the cache, or trained now (runner.train.adapt)
        adapted = ensure(job.adaptation, job, job.say)
    inputs = prepare_member(m, resolved, data, job.registry, adapted, store_path=job.store.path)
    callback = StoreCallback(
        store=job.store, run_id=job.run_id, owner=job.owner, metric_fns=inputs.metric_fns,
        computer=inputs.computer, valid=inputs.valid, test=inputs.test, num_labels=data.num_labels,
        selection_key=key, greater_is_better=resolved.greater_is_better, swa_k=swa_k, history=job.history,
        on_epoch=on_epoch, progress=job.progress,
    )
    trainer = make_trainer(m, resolved, inputs, job.owner.checkpoints, [callback])
    callback.bind(trainer)
    if job.progress is not None:
        per_step = m.train.batch_size * m.train.gradient_accumulation_steps * ranks.world_size()
        job.progress.member_started(m.name, m.train.epochs, len(job.history), per_step)
    trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)

    history = MemberHistory.of(m.name, job.history.values())
    if inputs.valid is None:  # nothing to select on (a refit on train+valid): the last epoch
        selected = max(job.history, default=None)
    else:
        selected = best_epoch(history, key, resolved.greater_is_better)
    if selected is None:
        raise TrainingError(f"member {m.name}: no epoch produced a finite {key}")
    if swa_k:
        run_swa(job, trainer, inputs)
    if ranks.writes():
        checkpoints.save_selected(job.owner, selected, lambda folder: write_member_info(job, folder))
        if job.progress is not None:  # the test numbers of the selected epoch, now that nothing can peek
            job.progress.member_done(m.name, selected, resolved.metric)
    return selected
