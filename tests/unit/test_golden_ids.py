"""Artifact ids are a promise: a refactor keeps every id of the shipped configs byte-identical.

The golden files were made with tests/golden/dump_ids.py before the settings refactor. An id
that changes on purpose bumps a version in bitbudget.versions; regenerate the file then, and
say why in the commit.
"""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "golden"))

from dump_ids import pin_versions, study_ids  # noqa: E402


@pytest.mark.parametrize("name", ["config", "paper"])
def test_shipped_configs_keep_their_ids(name, monkeypatch):
    monkeypatch.chdir(REPO)
    pin_versions(monkeypatch.setattr)
    golden = json.loads((REPO / "tests" / "golden" / f"ids-{name}.json").read_text())
    ids = study_ids([f"config/{name}.yaml"])
    for kind, expected in golden.items():
        assert ids[kind] == expected, f"{kind} ids of config/{name}.yaml changed"
