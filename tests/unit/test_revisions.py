"""A pinned model revision reaches the loaders: the hub-cache snapshot of that revision loads,
never `main`; a local git checkout at another commit stops the run naming the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bitbudget.revisions import RevisionError, loader_kwargs

from tests.harness import REPO

REV_A = "a" * 40
REV_B = "b" * 40


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory, random_tiny_model) -> Path:
    """An offline hub cache holding org/tiny at two revisions whose configs differ; main is B."""
    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--org--tiny"
    for revision, positions in ((REV_A, 1111), (REV_B, 2222)):
        snapshot = repo / "snapshots" / revision
        shutil.copytree(random_tiny_model, snapshot)
        config = json.loads((snapshot / "config.json").read_text())
        config["max_position_embeddings"] = positions
        (snapshot / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV_B)
    return home


def run_offline(hub_home: Path, code: str) -> dict:
    """Run `code` in a fresh interpreter with only the fake hub cache reachable."""
    env = {**os.environ, "HF_HOME": str(hub_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_hf_engine_loads_the_pinned_hub_revision(hub_home):
    code = """
import json
from bitbudget.backends.hf import load_model
out = {}
for rev in ("%s", "%s", None):
    model, _ = load_model("org/tiny", "float32", "cpu", rev)
    out[str(rev)] = model.config.max_position_embeddings
print(json.dumps(out))
""" % (REV_A, REV_B)
    loaded = run_offline(hub_home, code)
    assert loaded == {REV_A: 1111, REV_B: 2222, "None": 2222}  # unpinned: main


def test_rtn_quantize_reads_the_pinned_hub_revision(hub_home, tmp_path):
    code = """
import json
from pathlib import Path
from bitbudget.quantize import quantize_checkpoint
from bitbudget.specs import WeightFormat
meta = quantize_checkpoint("org/tiny", "%s", WeightFormat.from_config({"bits": 4, "group_size": 32}), revision="%s")
config = json.loads((Path("%s") / "config.json").read_text())
print(json.dumps({"positions": config["max_position_embeddings"], "revision": meta["revision"]}))
""" % (tmp_path / "ckpt", REV_A, tmp_path / "ckpt")
    assert run_offline(hub_home, code) == {"positions": 1111, "revision": REV_A}


def test_vllm_engine_arguments_carry_the_revision():
    from bitbudget.backends.vllm import engine_args

    from bitbudget.enginespec import EngineRuntime, EngineSettings
    from bitbudget.schema import schema_defaults

    defaults = {"name": "vllm", **schema_defaults("engine")}
    engine, batch_size = EngineSettings.from_key(defaults), EngineRuntime.from_config(defaults).batch_size
    args = engine_args(engine, batch_size, "org/tiny", 128, 0, revision=REV_A)
    assert args["revision"] == REV_A and args["tokenizer_revision"] == REV_A
    assert "revision" not in engine_args(engine, batch_size, "org/tiny", 128, 0)


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


def test_local_git_checkout_must_be_at_the_pinned_commit(tmp_path, random_tiny_model):
    model = tmp_path / "model"
    shutil.copytree(random_tiny_model, model)
    git(model, "init", "-q")
    git(model, "add", ".")
    git(model, "commit", "-q", "-m", "first")
    first = git(model, "rev-parse", "HEAD")
    (model / "config.json").write_text((model / "config.json").read_text().replace("{", '{"note": 1, ', 1))
    git(model, "commit", "-q", "-am", "second")
    assert loader_kwargs(str(model), git(model, "rev-parse", "HEAD")) == {}
    with pytest.raises(RevisionError) as error:
        loader_kwargs(str(model), first)
    assert f"git -C {model} checkout {first}" in str(error.value)
    git(model, "checkout", "-q", first)
    assert loader_kwargs(str(model), first) == {}  # the fix the message gives works


def test_plain_directory_cannot_honour_a_revision(random_tiny_model):
    with pytest.raises(RevisionError, match="plain directory"):
        loader_kwargs(str(random_tiny_model), REV_A)
    assert loader_kwargs(str(random_tiny_model), None) == {}
