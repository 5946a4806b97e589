"""Rich progress for `runner apply`: one line per member (epochs) and one for the steps of the epoch,
with samples per second and the time left for the member.

Each epoch's line shows the training loss and the validation metric; test metrics appear when the
member ends, for the epoch selection chose (`show_test`, `apply --show-test`: every epoch), so the
numbers a person watches while training are the ones that choose, never the test split's.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TrainingProgress:
    def __init__(self, console: Console | None = None, display: Progress | None = None, show_test: bool = False):
        self.console = console or Console(stderr=True)
        self.show_test = show_test
        # a view on a display that another TrainingProgress owns (runs training at once: `share`)
        self.owns_display = display is None
        self.progress = display or Progress(
            TextColumn("{task.fields[member]:<16}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[rate]}"),
            console=self.console,
            transient=False,
            # in Jupyter the cell's own streams take library output (tqdm): rich's redirect of them recurses
            redirect_stdout=not self.console.is_jupyter,
            redirect_stderr=not self.console.is_jupyter,
        )
        self.tasks: dict[str, int] = {}
        self.steps: int | None = None
        # several members training at once (runner.scale.ray_backend): each shows its steps on its own line
        self.parallel = not self.owns_display
        self.info: dict[str, str] = {}
        self.sharing = False
        self.rows: dict[str, dict[int, dict]] = {}  # member -> epoch -> the epoch's metrics
        self.pace: dict[str, tuple[float, int]] = {}  # member -> (time and step of its first step here)
        self.samples: dict[str, int | None] = {}  # member -> examples one optimizer step takes

    def fresh(self) -> "TrainingProgress":
        """A new display on the same console: the lines of another run (a refit, a replica, a trial);
        while `share`d, a view adding its lines to this display instead."""
        if self.sharing or not self.owns_display:
            return type(self)(self.console, self.progress, show_test=self.show_test)
        return type(self)(self.console, show_test=self.show_test)

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
                "", total=m.train.epochs, member=shown, info="[dim]waiting[/]", rate=""
            )

    def member_skipped(self, name: str) -> None:
        self.progress.update(self.tasks[name], info="[green]already finished[/]", completed=0)

    def adapt_started(self, name: str, epochs: int) -> None:
        """The member's line counts adapt epochs first ([adapt]); member_started takes it back."""
        self.progress.update(self.tasks[name], completed=0, total=epochs, info="[magenta]adapting[/] (masked-LM)")

    def adapt_epoch(self, name: str, epoch: int, epochs: int, heldout_loss: float) -> None:
        self.progress.update(self.tasks[name], completed=epoch,
                             info=f"[magenta]adapt[/] epoch {epoch} · held-out mlm_loss {heldout_loss:.4f}")

    def member_started(self, name: str, epochs: int, done: int, samples_per_step: int | None = None) -> None:
        """`samples_per_step`: examples one optimizer step takes (batch, accumulation and processes), for
        the samples per second shown."""
        self.info[name] = "[cyan]training[/]"
        self.pace.pop(name, None)
        self.samples[name] = samples_per_step
        self.progress.update(self.tasks[name], completed=done, total=epochs, info=self.info[name], rate="")
        if self.parallel:
            return
        if self.steps is not None:
            self.progress.remove_task(self.steps)
        self.steps = self.progress.add_task("", total=None, member="  steps", info="", rate="")

    def step(self, name: str, step: int, max_steps: int) -> None:
        rate = self._rate(name, step, max_steps)
        if self.parallel:
            self.progress.update(self.tasks[name], info=f"{self.info.get(name, '')} · step {step}/{max_steps}",
                                 rate=rate)
        elif self.steps is not None:
            self.progress.update(self.steps, completed=step, total=max_steps, rate=rate)

    def _rate(self, name: str, step: int, max_steps: int) -> str:
        """`412 samples/s · 0:00:51 left`: measured from this process's first step of the member (a resumed
        member's earlier steps took no time here)."""
        now = time.monotonic()
        t0, first = self.pace.setdefault(name, (now, step))
        if step <= first or now <= t0:
            return ""
        per_step = (now - t0) / (step - first)
        samples = self.samples.get(name)
        speed = f"{samples / per_step:,.0f} samples/s · " if samples else f"{1 / per_step:.1f} steps/s · "
        return f"{speed}{_clock(per_step * max(max_steps - step, 0))} left"

    def epoch_done(self, name: str, epoch: int, row: dict, metric: str) -> None:
        shown = f"eval_{metric}"
        self.rows.setdefault(name, {})[epoch] = dict(row)
        parts = [f"epoch {epoch}"]
        if row.get("train_loss") is not None:
            parts.append(f"train_loss {row['train_loss']:.4f}")
        if shown in row:
            parts.append(f"{shown} {row[shown]:.4f}")
        if self.show_test and "test_accuracy" in row:
            parts.append(f"test_accuracy {row['test_accuracy']:.4f}")
        self.info[name] = " · ".join(parts)
        self.progress.update(self.tasks[name], completed=epoch, info=self.info[name])

    def member_done(self, name: str, selected: int, metric: str) -> None:
        """The member ended: its selected epoch, with that epoch's validation and test numbers."""
        row = self.rows.get(name, {}).get(selected, {})
        parts = [f"[green]done[/] · selected epoch {selected}"]
        for key in dict.fromkeys([f"eval_{metric}", "test_accuracy"]):
            if row.get(key) is not None:
                parts.append(f"{key} {row[key]:.4f}")
        self.info[name] = " · ".join(parts)
        self.progress.update(self.tasks[name], info=self.info[name], rate="")

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
