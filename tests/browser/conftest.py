"""Headless Chromium helpers for the report browser test."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("bench_report_load_flags", REPO / "bench" / "report_load.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)

CHROMIUM = _bench.CHROMIUM
# the benchmark's flags, and the console on stderr for console_problems
FLAGS = [*_bench.CHROMIUM_FLAGS, "--disable-quic", "--enable-logging=stderr", "--v=0"]


@pytest.fixture
def chromium(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")

    def run(url: str, *extra: str) -> subprocess.CompletedProcess:
        profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture
def console_problems():
    """A function: the console messages Chromium logs to stderr that point at page errors."""

    def problems(stderr: str) -> list[str]:
        return [line for line in stderr.splitlines()
                if ":CONSOLE" in line or "Uncaught" in line or "Refused to" in line]

    return problems
