"""Bad input stops the run before any job, naming the field and the fix.

One refusal goes through `snakemake -n` (the Snakefile reads the files and stops before planning);
the others through the functions the Snakefile calls before any job (`plan_as_the_snakefile`).
"""

from __future__ import annotations

import pytest
import yaml

from bitbudget.config import ConfigError
from tests.harness import Study, plan_as_the_snakefile, small_config

pytestmark = pytest.mark.pipeline


def test_duplicate_model_key(tmp_path):
    text = yaml.safe_dump(small_config(), sort_keys=False)
    model = text.split("models:\n", 1)[1].split("\n  tiny-m:", 1)[0]  # the tiny-s entry
    duplicated = text.replace("models:\n", "models:\n" + model + "\n", 1)
    study = Study(tmp_path, small_config())
    (tmp_path / "bad.yaml").write_text(duplicated)
    result = study.snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0 and "Job stats" not in result.output
    assert "models.tiny-s" in result.output and "duplicate" in result.output


def test_duplicate_model_key_in_process(tmp_path):
    text = yaml.safe_dump(small_config(), sort_keys=False)
    model = text.split("models:\n", 1)[1].split("\n  tiny-m:", 1)[0]
    (tmp_path / "bad.yaml").write_text(text.replace("models:\n", "models:\n" + model + "\n", 1))
    with pytest.raises(ConfigError) as refusal:
        plan_as_the_snakefile(small_config(), [tmp_path / "bad.yaml"])
    assert "models.tiny-s" in str(refusal.value) and "duplicate" in str(refusal.value)
    assert "bad.yaml" in str(refusal.value)


def test_missing_local_model_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resources").mkdir()  # as in a checkout: resources/... is local, not a hub org
    config = small_config()
    config["models"]["tiny-s"]["path"] = "resources/no-such-model"
    with pytest.raises(ConfigError) as refusal:
        plan_as_the_snakefile(config)
    assert "models.tiny-s.path" in str(refusal.value) and "resources/no-such-model" in str(refusal.value)


def test_empty_dataset_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = small_config()
    (tmp_path / "empty.jsonl").write_text("")
    config["datasets"]["arith"] = {"kind": "integer", "source": "file", "file": "empty.jsonl"}
    with pytest.raises(ConfigError) as refusal:
        plan_as_the_snakefile(config)
    assert "datasets.arith" in str(refusal.value) and "no questions" in str(refusal.value)
