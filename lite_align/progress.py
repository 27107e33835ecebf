"""Progress bars with ETA on stderr (rich), for the CLI. The library only sees study.Progress."""

from __future__ import annotations

from typing import Any


class RichProgress:
    """One bar per phase; stdout stays clean for --json."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console

        self.enabled = enabled
        self.console = Console(stderr=True)
        self._progress: Any = None
        self._task: Any = None

    def start(self, description: str, total: int, *, unit: str = "items") -> None:
        """A new bar; ``unit="bytes"`` shows sizes and the transfer rate (downloads)."""
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.finish()
        counts = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *counts,
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        # a download of unknown size (total 0) gets a bar without an end
        self._task = self._progress.add_task(description, total=(total or None) if unit == "bytes" else total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False)
