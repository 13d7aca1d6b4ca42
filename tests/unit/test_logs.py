"""A job's earlier log survives its rerun (Snakemake deletes the declared log first)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from bitbudget.logs import configure_logging, history_path


def test_a_rerun_keeps_the_killed_runs_log(tmp_path):
    log_file = tmp_path / "logs" / "generate" / "abc.log"
    job = SimpleNamespace(log=[str(log_file)], rule="generate")
    configure_logging(job).error("first run: killed at question 3")
    log_file.unlink()  # what Snakemake does before it runs the job again
    configure_logging(job).info("second run: resumed")
    logging.shutdown()
    assert history_path(log_file) == tmp_path / "logs" / "generate" / "abc.all.log"
    history = history_path(log_file).read_text()
    assert history.count("==== run started") == 2
    assert history.index("killed at question 3") < history.index("second run: resumed")
    assert "killed at question 3" not in log_file.read_text()  # the declared log is this run's
