"""The workflow passes Snakemake's linter and snakefmt, as CI promises."""

import subprocess
import sys

import pytest

from tests.harness import REPO

#: the default study with adaptive sampling on: the rule graph must not depend on it
ADAPTIVE_OVERLAY = "sampling:\n  adaptive: {initial: 2, step: 3}\n"


def run(*command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("adaptive", [False, True], ids=["adaptive-off", "adaptive-on"])
def test_snakemake_lint_is_clean(tmp_path, adaptive):
    overlay = tmp_path / "adaptive.yaml"
    overlay.write_text(ADAPTIVE_OVERLAY)
    config_files = ["--configfile", "config/config.yaml", str(overlay)] if adaptive else []
    result = run(sys.executable, "-m", "snakemake", "--lint", *config_files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = run("snakefmt", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
