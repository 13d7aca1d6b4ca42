from __future__ import annotations

import os
from pathlib import Path

import pytest
from filelock import FileLock
from xdist.scheduler import LoadScopeScheduling

from bitbudget.tinymodels import train_tiny_model
from tests.harness import Study, small_config
from tests.vllmserver import VLLM_PYTHON, VLLMServer

REPO = Path(__file__).resolve().parents[1]
SMALL_STUDY_DONE = ".small-study-finished"
#: tests that share one machine-wide service run on one xdist worker, one after another: the SLURM
#: test cluster and Chromium (and the local-gpu device slots), and the run's one vLLM process
SERVICE_GROUPS = {"tests/executors/": "executors-and-browser", "tests/browser/": "executors-and-browser",
                  "tests/vllm/": "vllm", "tests/qwen3/": "vllm"}


def xdist_group(nodeid: str) -> str:
    """The work unit of a test under `--dist loadgroup`: its service's group, else its module
    (a module's tests share its fixtures)."""
    module = nodeid.split("::")[0]
    return next((group for prefix, group in SERVICE_GROUPS.items() if module.startswith(prefix)), module)


class GroupedScheduling(LoadScopeScheduling):
    """xdist's load-by-scope scheduling with the scope of :func:`xdist_group`. (xdist's own
    loadgroup reads `xdist_group` markers through a node id suffix that this pytest no longer
    keeps, so the groups are computed here from the node ids.)"""

    def _split_scope(self, nodeid: str) -> str:
        return xdist_group(nodeid)


@pytest.hookimpl(optionalhook=True)  # a run with -p no:xdist has no such hook
def pytest_xdist_make_scheduler(config, log):
    return GroupedScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None


def shared_tmp(tmp_path_factory) -> Path:
    """A temporary directory shared by every worker of this test run (xdist or not)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def small_study(tmp_path_factory) -> Study:
    """The small study (tests.harness.small_config), run to completion once per test run and
    shared by every test and worker: read it, never change it (take `small_study_copy`)."""
    root = shared_tmp(tmp_path_factory)
    study = Study(root / "small-study", small_config())
    with FileLock(str(root / "small-study.lock")):
        if not (study.workdir / SMALL_STUDY_DONE).exists():
            study.workdir.mkdir(exist_ok=True)
            study.snakemake()
            (study.workdir / SMALL_STUDY_DONE).touch()
    return study


@pytest.fixture
def small_study_copy(small_study, tmp_path) -> Study:
    """A private copy of the finished small study (results, Snakemake state, report, config)."""
    return small_study.copy_to(tmp_path / "study")


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """The test run's one vLLM process, engines kept per (checkpoint, engine settings)."""
    if not VLLM_PYTHON.exists():
        pytest.skip(f"{VLLM_PYTHON.relative_to(REPO)} missing: run envs/install.sh vllm")
    server = VLLMServer(tmp_path_factory.mktemp("vllm-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def random_tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny Qwen3 with the project's tokenizer: fast, deterministic, real HF files."""
    out = tmp_path_factory.mktemp("models") / "random-tiny"
    train_tiny_model(
        out, hidden_size=64, num_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=128, steps=1, batch_size=2, learning_rate=1e-4, seed=0,
        task={"kinds": ["integer"], "difficulty": {"integer": [2, 4]}, "truncated_fraction": 0.0},
        warmup_steps=1,
    )
    return out
