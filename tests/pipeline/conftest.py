"""Real Snakemake runs on a very small study in a temporary working directory."""

from __future__ import annotations

import copy

import pytest

from tests.smallstudy import REPO, RUN_TIMEOUT_S, SNAKEMAKE, Study, parse_job_stats, small_config  # noqa: F401


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> Study:
    """A small study run once to completion; tests copy its config before changing it."""
    study = Study(tmp_path_factory.mktemp("study"), small_config())
    study.snakemake()
    return study


@pytest.fixture
def study_copy(finished_study):
    """The finished study with a private copy of its config (the results are shared)."""
    return Study(finished_study.workdir, copy.deepcopy(finished_study.config))
