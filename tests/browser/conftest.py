"""Headless Chromium helpers for the report browser test."""

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars", "--window-size=1280,2000",
         "--virtual-time-budget=3000"]


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
