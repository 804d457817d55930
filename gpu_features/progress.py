"""The progress callback every long-running library call accepts: ``progress(stage, done, total)``.

The library only calls it; the CLI turns the calls into rich progress bars
(``cli.RichProgress``), tests and scripts pass nothing.
"""
from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The default callback: report nothing."""
