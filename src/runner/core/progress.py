"""Rich progress for `runner apply`: one line per member (epochs) and one for the steps of the epoch."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TrainingProgress:
    def __init__(self, console: Console | None = None, display: Progress | None = None):
        self.console = console or Console(stderr=True)
        # a view on a display that another TrainingProgress owns (runs training at once: `share`)
        self.owns_display = display is None
        self.progress = display or Progress(
            TextColumn("{task.fields[member]:<16}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.steps: int | None = None
        # several members training at once (runner.scale.ray_backend): each shows its steps on its own line
        self.parallel = not self.owns_display
        self.info: dict[str, str] = {}
        self.sharing = False

    def fresh(self) -> "TrainingProgress":
        """A new display on the same console: the lines of another run (a refit, a replica, a trial);
        while `share`d, a view adding its lines to this display instead."""
        if self.sharing or not self.owns_display:
            return type(self)(self.console, self.progress)
        return type(self)(self.console)

    def share(self) -> None:
        """Several runs train at once (sweep trials under Ray): one live display holds all their lines."""
        self.sharing = True
        self.progress.start()

    def end_share(self) -> None:
        self.sharing = False
        self.progress.stop()

    def start(self, members, label: str | None = None) -> None:
        """A line per member; a view on a shared display names each line's run too (`label`)."""
        if self.owns_display:
            self.progress.start()
        for m in members:
            shown = m.name if self.owns_display or not label else f"{label} {m.name}"
            self.tasks[m.name] = self.progress.add_task(
                "", total=m.train.epochs, member=shown, info="[dim]waiting[/]"
            )

    def member_skipped(self, name: str) -> None:
        self.progress.update(self.tasks[name], info="[green]already finished[/]", completed=0)

    def adapt_started(self, name: str, epochs: int) -> None:
        """The member's line counts adapt epochs first ([adapt]); member_started takes it back."""
        self.progress.update(self.tasks[name], completed=0, total=epochs, info="[magenta]adapting[/] (masked-LM)")

    def adapt_epoch(self, name: str, epoch: int, epochs: int, heldout_loss: float) -> None:
        self.progress.update(self.tasks[name], completed=epoch,
                             info=f"[magenta]adapt[/] epoch {epoch} · held-out mlm_loss {heldout_loss:.4f}")

    def member_started(self, name: str, epochs: int, done: int) -> None:
        self.info[name] = "[cyan]training[/]"
        self.progress.update(self.tasks[name], completed=done, total=epochs, info=self.info[name])
        if self.parallel:
            return
        if self.steps is not None:
            self.progress.remove_task(self.steps)
        self.steps = self.progress.add_task("", total=None, member="  steps", info="")

    def step(self, name: str, step: int, max_steps: int) -> None:
        if self.parallel:
            self.progress.update(self.tasks[name], info=f"{self.info.get(name, '')} · step {step}/{max_steps}")
        elif self.steps is not None:
            self.progress.update(self.steps, completed=step, total=max_steps)

    def epoch_done(self, name: str, epoch: int, row: dict, metric: str) -> None:
        shown = f"eval_{metric}"
        parts = [f"epoch {epoch}"]
        if row.get("train_loss") is not None:
            parts.append(f"train_loss {row['train_loss']:.4f}")
        if shown in row:
            parts.append(f"{shown} {row[shown]:.4f}")
        if "test_accuracy" in row and shown != "eval_test_accuracy":
            parts.append(f"test_accuracy {row['test_accuracy']:.4f}")
        self.info[name] = " · ".join(parts)
        self.progress.update(self.tasks[name], completed=epoch, info=self.info[name])

    def stop(self) -> None:
        if self.steps is not None:
            self.progress.remove_task(self.steps)
            self.steps = None
        if self.owns_display:
            self.progress.stop()
        else:  # a run's lines go when it is done; the run's result line says how it went
            for task in self.tasks.values():
                self.progress.remove_task(task)
            self.tasks.clear()
