"""Bad input stops `snakemake -n` before any job, naming the field and the fix."""

from __future__ import annotations

import pytest
import yaml

from tests.pipeline.conftest import Study, small_config

pytestmark = pytest.mark.pipeline


def dry_run_of(study: Study, config_text: str):
    path = study.workdir / "bad.yaml"
    path.write_text(config_text)
    result = study.snakemake("-n", "--configfile", str(path), check=False)
    return result.returncode, result.stdout + result.stderr


def test_duplicate_model_key(tmp_path):
    text = yaml.safe_dump(small_config(), sort_keys=False)
    model = text.split("models:\n", 1)[1].split("\n  tiny-m:", 1)[0]  # the tiny-s entry
    duplicated = text.replace("models:\n", "models:\n" + model + "\n", 1)
    code, message = dry_run_of(Study(tmp_path, small_config()), duplicated)
    assert code != 0 and "Job stats" not in message
    assert "models.tiny-s" in message and "duplicate" in message


def test_missing_local_model_path(tmp_path):
    (tmp_path / "resources").mkdir()  # as in a checkout: resources/... is local, not a hub org
    config = small_config()
    config["models"]["tiny-s"]["path"] = "resources/no-such-model"
    code, message = dry_run_of(Study(tmp_path, config), yaml.safe_dump(config))
    assert code != 0 and "Job stats" not in message
    assert "models.tiny-s.path" in message and "resources/no-such-model" in message


def test_empty_dataset_file(tmp_path):
    config = small_config()
    (tmp_path / "empty.jsonl").write_text("")
    config["datasets"]["arith"] = {"kind": "integer", "source": "file", "file": "empty.jsonl"}
    code, message = dry_run_of(Study(tmp_path, config), yaml.safe_dump(config))
    assert code != 0 and "Job stats" not in message
    assert "datasets.arith" in message and "no questions" in message
