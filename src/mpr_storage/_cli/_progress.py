"""Progress display: a bar for bulk transfers (objects and bytes) and one for a single object
(bytes), both fed by the library's ``on_progress`` callbacks, and the transfer summary."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column
from rich.text import Text

from .. import TransferReport
from ._base import Context, per_second, safe, size


def summary(report: TransferReport) -> str:
    """``300 objects, 6.1 MiB in 0.42 s (714 objects/s, 14.5 MiB/s)``."""
    n = len(report.done)
    text = (
        f"{n} object{'s' * (n != 1)}, {size(report.bytes)} in {report.seconds:.2f} s "
        f"({per_second(n, report.seconds):.0f} objects/s, "
        f"{size(per_second(report.bytes, report.seconds))}/s)"
    )
    if report.skipped:
        text += f"; {len(report.skipped)} skipped (already there)"
    return text


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _ObjectsColumn(ProgressColumn):
    """``12/300 objects``; ``998/? objects (listing...)`` while the total is unknown."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        if task.total is None:
            return Text(f"{done}/? objects (listing...)", style="progress.download")
        return Text(f"{done}/{int(task.total)} objects", style="progress.download")


class _BytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(size(task.fields.get("bytes", 0)), style="progress.filesize")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        done = task.fields.get("bytes", 0)
        if not done:
            return Text("")
        rate = size(per_second(done, max(task.elapsed or 0.0, 0.001)))
        return Text(f"{rate}/s", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """From the objects done so far; unknown (``-:--``) while the total is."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        remaining: float | None = None
        if task.finished:
            remaining = 0.0
        elif task.total is not None and task.completed and elapsed > 0:
            remaining = elapsed * (task.total - task.completed) / task.completed
        eta = _clock(remaining) if remaining is not None else "-:--"
        return Text(f"eta {eta}", style="progress.remaining")


def _description() -> TextColumn:
    return TextColumn(
        "{task.description}",
        markup=False,
        table_column=Column(no_wrap=True, overflow="ellipsis", max_width=24),
    )


def _bar() -> BarColumn:
    return BarColumn(bar_width=None, table_column=Column(min_width=10, max_width=30))


class _Display:
    def __init__(self, ctx: Context, description: str, *columns: ProgressColumn) -> None:
        self._progress = Progress(
            *columns,
            console=ctx.console,
            transient=True,
            disable=not ctx.show_progress,
        )
        self._task = self._progress.add_task(safe(description), total=None, bytes=0)

    def __enter__(self) -> _Display:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()


class Bar(_Display):
    """A bulk transfer's bar (objects, bytes, rate, ETA); a no-op when output is quiet.

    Its instances are ``on_progress(done_objects, total_objects, done_bytes)`` callbacks:
    while ``total_objects`` is ``None`` (the keys are still being listed) the bar pulses and
    the total shows as unknown.
    """

    def __init__(self, ctx: Context, description: str) -> None:
        def fixed() -> Column:
            return Column(no_wrap=True)

        super().__init__(
            ctx,
            description,
            _description(),
            _bar(),
            _ObjectsColumn(table_column=fixed()),
            _BytesColumn(table_column=fixed()),
            _RateColumn(table_column=fixed()),
            _EtaColumn(table_column=fixed()),
        )
        self._calls = 0
        self._total: int | None = None

    def __enter__(self) -> Bar:
        super().__enter__()
        return self

    def __call__(self, done_objects: int, total_objects: int | None, done_bytes: int) -> None:
        # Redraw at once on the first call and when the total becomes known.
        redraw = not self._calls or total_objects != self._total
        self._calls += 1
        self._total = total_objects
        self._progress.update(
            self._task,
            completed=done_objects,
            total=total_objects,
            bytes=done_bytes,
            refresh=redraw,
        )


class ByteBar(_Display):
    """A single object's bar (bytes, rate, time left): rich's own transfer columns.

    Its instances are ``on_progress(done_bytes, total_bytes)`` callbacks; each call redraws.
    """

    def __init__(self, ctx: Context, description: str) -> None:
        super().__init__(
            ctx,
            description,
            _description(),
            _bar(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )

    def __enter__(self) -> ByteBar:
        super().__enter__()
        return self

    def __call__(self, done_bytes: int, total_bytes: int | None) -> None:
        self._progress.update(self._task, completed=done_bytes, total=total_bytes, refresh=True)
