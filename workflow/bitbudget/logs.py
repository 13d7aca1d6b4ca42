"""Route a Snakemake script's logging and uncaught exceptions to its rule's log file.

Snakemake deletes a job's log before it runs the job again, so the log of a run that was
killed or preempted would be lost with it. Every run therefore also appends to
`<log>.all.log` beside it (never declared, so never deleted), headed by its start time: the
reason an earlier run died can still be read after the rerun.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def history_path(log_path: str | Path) -> Path:
    """`logs/generate/abc.log` -> `logs/generate/abc.all.log`: every run of the job, appended."""
    log_path = Path(log_path)
    return log_path.with_name(f"{log_path.stem}.all{log_path.suffix or '.log'}")


def file_handlers(log_path: str | Path, header: bool = True) -> list[logging.Handler]:
    """Handlers appending to the job's log and to its history (headed by this run's start)."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    history = history_path(log_path)
    if header:
        with open(history, "a", encoding="utf-8") as handle:
            handle.write(f"==== run started {time.strftime('%Y-%m-%d %H:%M:%S')} (pid {os.getpid()}) ====\n")
    return [logging.FileHandler(str(log_path), mode="a"), logging.FileHandler(str(history), mode="a")]


def configure_logging(snakemake, level: int = logging.INFO) -> logging.Logger:
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers += file_handlers(snakemake.log[0])
    logging.basicConfig(level=level, handlers=handlers, force=True, format=FORMAT)
    logger = logging.getLogger(snakemake.rule)

    def log_uncaught(exc_type, exc, tb):
        logger.error("uncaught exception", exc_info=(exc_type, exc, tb))

    sys.excepthook = log_uncaught
    return logger
