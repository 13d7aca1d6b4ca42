"""The workflow passes Snakemake's linter and snakefmt, as CI promises."""

import subprocess
import sys

from tests.harness import REPO


def run(*command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean():
    result = run(sys.executable, "-m", "snakemake", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = run("snakefmt", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
