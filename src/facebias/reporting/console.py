"""What a stage says: progress through ``logging`` (Hydra keeps it in the job's log file; under DDP only
rank 0 speaks), and one summary table at the end through rich."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path


class RankZeroFilter(logging.Filter):
    """Drop records from every process but rank 0 of a distributed job."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003
        return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) or 0) == 0


def get_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, RankZeroFilter) for f in logger.filters):
        logger.addFilter(RankZeroFilter())
    if logger.getEffectiveLevel() > logging.INFO:  # outside Hydra (tests, notebooks) progress still shows
        logger.setLevel(logging.INFO)
    return logger


def console(min_width: int = 0):
    from rich.console import Console

    return Console(width=max(Console().width, min_width)) if min_width else Console()


def print_summary(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str] = (),
                  out: Path | None = None, sync_command: str | None = None, left: Sequence[str] = (),
                  min_width: int = 0) -> None:
    """The one-screen summary every stage ends with: a table, notes, where the outputs went, how to upload W&B."""
    from rich.table import Table

    if not RankZeroFilter().filter(logging.makeLogRecord({})):
        return
    table = Table(title=title)
    left = set(left) or {columns[0]}
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    for row in rows:
        table.add_row(*row)
    con = console(min_width)
    con.print(table)
    for note in notes:
        con.print(note, soft_wrap=True, highlight=False)
    if sync_command:
        con.print(f"W&B ran offline; upload with: {sync_command}", soft_wrap=True)
