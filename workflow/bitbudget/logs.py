"""Route a Snakemake script's logging and uncaught exceptions to its rule's log file."""

from __future__ import annotations

import logging
import sys


def configure_logging(snakemake, level: int = logging.INFO) -> logging.Logger:
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(str(snakemake.log[0]), mode="a"))
    logging.basicConfig(
        level=level, handlers=handlers, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logger = logging.getLogger(snakemake.rule)

    def log_uncaught(exc_type, exc, tb):
        logger.error("uncaught exception", exc_info=(exc_type, exc, tb))

    sys.excepthook = log_uncaught
    return logger
