"""Fault drills on a small study with real Snakemake: a user's bad day.

Each drill damages one kind of stored artifact (or kills or starves a job), then asserts that
the next plain run either recomputes exactly what was lost or stops naming the file and a fix,
that the fix works, and that nothing already complete is lost. Each drill works on its own copy
of the finished small study, so the drills pass alone and in any order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bitbudget.shards import HOLD_AFTER_SHARD
from bitbudget.study import build_study
from tests.harness import Study

pytestmark = pytest.mark.pipeline

ANALYSIS = {"aggregate": 1, "fit": 1, "report": 1}
N_QUESTIONS = 4  # the small study's


@pytest.fixture
def study(small_study_copy) -> Study:
    return small_study_copy


def snapshot(workdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted((workdir / "results").rglob("*")) if p.is_file()}


def assert_kept(before: dict, after: dict, *changed: str) -> None:
    """Everything complete before is there byte for byte, except under the `changed` prefixes."""
    kept = {k: v for k, v in before.items() if not k.startswith(changed)}
    assert {k: after.get(k) for k in kept} == kept


def ids(workdir: Path, kind: str) -> list[str]:
    return sorted(p.name for p in (workdir / "results" / kind).iterdir() if not p.name.startswith("."))


def quantized_generation(workdir: Path) -> str:
    """The generation that reads a quantized checkpoint (its trace key names that checkpoint)."""
    ckpts = set(ids(workdir, "checkpoints"))
    for gen in ids(workdir, "generations"):
        meta = json.loads((workdir / "results" / "generations" / gen / "samples.meta.json").read_text())
        if meta["key"]["trace_key"]["checkpoint"] in ckpts:
            return gen
    raise AssertionError("no generation reads a quantized checkpoint")


def generation_of(study: Study, gen: str):
    """The job spec of generation `gen`, planned from the study's config in its directory."""
    with contextlib.chdir(study.workdir):
        return build_study(study.config).generations[gen]


def trace_of(workdir: Path, gen: str) -> Path:
    meta = json.loads((workdir / "results" / "generations" / gen / "samples.meta.json").read_text())
    return workdir / "results" / "traces" / meta["key"]["trace"]


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def stops_naming(study: Study, path: Path) -> str:
    """The next plain run fails; its message names `path` and a fix; returns that message."""
    result = study.snakemake(check=False)
    text = result.output
    assert result.returncode != 0, text[-3000:]
    relative = str(path.relative_to(study.workdir))
    messages = [line for line in text.splitlines() if relative in line and "Fix: `rm " in line]
    assert messages, text[-4000:]
    return messages[0]


def apply_fix(study: Study, message: str) -> None:
    """Run the `rm` command the message gives, in the study's working directory."""
    command = re.search(r"Fix: `(rm [^`]+)`", message).group(1)
    subprocess.run(command, shell=True, cwd=study.workdir, check=True)


def test_deleted_grades_recompute_exactly_that_file_and_its_dependents(study):
    before = snapshot(study.workdir)
    grade = ids(study.workdir, "grades")[0]
    shutil.rmtree(study.workdir / "results" / "grades" / grade)
    assert study.snakemake().jobs == {"grade": 1, **ANALYSIS}
    after = snapshot(study.workdir)
    assert_kept(before, after, "results/aggregate/", "results/fit/")
    assert study.planned_jobs() == {}


def test_corrupt_grades_stop_naming_the_file_and_the_fix_recomputes_them(study):
    before = snapshot(study.workdir)
    grades = study.workdir / "results" / "grades" / ids(study.workdir, "grades")[1] / "grades.parquet"
    flip_byte(grades)
    message = stops_naming(study, grades)
    apply_fix(study, message)
    assert study.snakemake().jobs == {"grade": 1, **ANALYSIS}
    assert_kept(before, snapshot(study.workdir), "results/aggregate/", "results/fit/")


def test_truncated_samples_stop_naming_the_file_and_the_fix_reuses_every_shard(study):
    before = snapshot(study.workdir)
    gen = ids(study.workdir, "generations")[0]
    samples = study.workdir / "results" / "generations" / gen / "samples.parquet"
    truncate(samples)
    apply_fix(study, stops_naming(study, samples))
    jobs = study.snakemake().jobs
    assert jobs["generate"] == 1 and jobs["grade"] == 1 and "quantize" not in jobs
    after = snapshot(study.workdir)
    assert_kept(before, after, "results/generations/", "results/grades/", "results/aggregate/", "results/fit/")
    meta = json.loads((samples.parent / "samples.meta.json").read_text())
    assert meta["generated"] == 0 and meta["id"] == gen  # all from stored shards; id = directory id


def test_corrupt_checkpoint_stops_naming_the_file_and_the_fix_requantizes(study):
    before = snapshot(study.workdir)
    ckpt = study.workdir / "results" / "checkpoints" / ids(study.workdir, "checkpoints")[0]
    gen = quantized_generation(study.workdir)
    flip_byte(ckpt / "model.safetensors", offset=-10)
    samples = study.workdir / "results" / "generations" / gen / "samples.parquet"
    samples.unlink()  # its generation is the reader that checks the checkpoint
    apply_fix(study, stops_naming(study, ckpt / "model.safetensors"))
    assert study.snakemake().jobs["quantize"] == 1
    after = snapshot(study.workdir)
    assert_kept(before, after, f"results/checkpoints/{ckpt.name}/", "results/generations/",
                "results/grades/", "results/aggregate/", "results/fit/")
    assert after[f"results/checkpoints/{ckpt.name}/model.safetensors"] == before[f"results/checkpoints/{ckpt.name}/model.safetensors"]


def test_edited_shard_stops_its_generation_naming_the_shard(study):
    before = snapshot(study.workdir)
    gen = ids(study.workdir, "generations")[0]
    trace = trace_of(study.workdir, gen)
    shard = sorted((trace / "shards").glob("*.json"))[0]
    content = json.loads(shard.read_text())
    ids_ = content["samples"][0]["think_ids"]
    ids_[0], ids_[1] = ids_[1], ids_[0]  # still valid JSON, two token ids swapped
    shard.write_text(json.dumps(content))
    shutil.rmtree(study.workdir / "results" / "generations" / gen)  # the generation runs again
    message = stops_naming(study, shard)
    assert "does not match its checksum" in message
    apply_fix(study, message)
    study.snakemake()
    after = snapshot(study.workdir)
    others = [k for k in before if k.startswith(str(trace.relative_to(study.workdir))) and not k.endswith(shard.name)]
    assert {k: after[k] for k in others} == {k: before[k] for k in others}  # other shards untouched
    meta = json.loads((study.workdir / "results" / "generations" / gen / "samples.meta.json").read_text())
    assert meta["generated"] == 1


def test_truncated_aggregate_table_stops_naming_it_and_the_fix_reaggregates(study):
    before = snapshot(study.workdir)
    table = study.workdir / "results" / "aggregate" / "questions.parquet"
    truncate(table)
    apply_fix(study, stops_naming(study, table))
    assert study.snakemake().jobs == ANALYSIS
    assert_kept(before, snapshot(study.workdir), "results/fit/")


def test_metadata_without_data_and_data_without_metadata_both_recompute(study):
    before = snapshot(study.workdir)
    grades = ids(study.workdir, "grades")
    (study.workdir / "results" / "grades" / grades[1] / "grades.parquet").unlink()
    assert study.snakemake().jobs == {"grade": 1, **ANALYSIS}
    assert_kept(before, snapshot(study.workdir), "results/aggregate/", "results/fit/")
    # metadata is a declared output: data whose metadata never got written is redone as well
    (study.workdir / "results" / "grades" / grades[0] / "grades.meta.json").unlink()
    assert study.snakemake().jobs == {"grade": 1, **ANALYSIS}
    assert study.planned_jobs() == {}


def generate_job_pids(workdir: Path) -> list[int]:
    scripts = f"{workdir}/.snakemake/scripts/"
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if scripts in cmdline and "generate.py" in cmdline:
                pids.append(int(proc.name))
    return pids


def test_kill_9_of_a_generate_job_keeps_its_shards_and_its_log(study, tmp_path):
    gen = ids(study.workdir, "generations")[0]
    trace = trace_of(study.workdir, gen)
    shutil.rmtree(trace / "shards")
    shutil.rmtree(study.workdir / "results" / "generations" / gen)
    gate = tmp_path / "gate"  # never opened: the job holds after its first shard until killed
    run = study.start(env={HOLD_AFTER_SHARD: str(gate)})
    try:
        deadline = time.monotonic() + 600
        while not (pids := generate_job_pids(study.workdir)) or not any((trace / "shards").glob("*.json")):
            assert run.proc.poll() is None and time.monotonic() < deadline, run.output[-3000:]
            time.sleep(0.05)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert run.wait().returncode != 0
    finally:
        run.stop()
    kept = {p.name: p.read_bytes() for p in (trace / "shards").glob("*.json")}
    assert len(kept) == 1
    (trace / "shards" / ".q-partial.json.abc123.tmp").write_text('{"question_id": "q')  # as a killed write leaves
    study.snakemake()
    assert {p.name: p.read_bytes() for p in (trace / "shards").glob("*.json") if p.name in kept} == kept
    meta = json.loads((study.workdir / "results" / "generations" / gen / "samples.meta.json").read_text())
    assert meta["generated"] == N_QUESTIONS - len(kept)
    assert not list((study.workdir / "results").rglob("*.tmp"))
    history = (study.workdir / "logs" / "generate" / f"{gen}.all.log").read_text()
    assert history.count("==== run started") >= 3  # first run, killed run, resumed run


def test_write_failing_half_way_leaves_no_metadata_and_the_rerun_completes(study):
    before = snapshot(study.workdir)
    gen = ids(study.workdir, "generations")[1]
    samples = study.workdir / "results" / "generations" / gen / "samples.parquet"
    limit = samples.stat().st_size // 2  # samples.parquet cannot be written whole: EFBIG half-way
    assert max(len(v) for k, v in before.items() if "/shards/" in k) < limit
    samples.unlink()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # the generate job's own entry point under the limit (Snakemake itself writes files of
    # that size while parsing, so the limit goes on the job, not on the scheduler)
    spec_file = study.workdir / "drill-spec.json"
    spec_file.write_text(json.dumps(generation_of(study, gen).engine_spec().to_dict()))
    result = subprocess.run([sys.executable, "-m", "bitbudget.generate", "--spec", str(spec_file),
                             "--output", str(samples.relative_to(study.workdir))],
                            cwd=study.workdir, capture_output=True, text=True, preexec_fn=small_files)
    assert result.returncode != 0 and "File too large" in result.stderr, result.stderr[-3000:]
    assert not samples.exists() and not (samples.parent / "samples.meta.json").exists(), result.stderr[-3000:]
    assert study.snakemake().jobs["generate"] == 1
    assert_kept(before, snapshot(study.workdir), "results/generations/", "results/grades/",
                "results/aggregate/", "results/fit/")
    frame = pd.read_parquet(samples)
    assert len(frame) and not list((study.workdir / "results").rglob("*.tmp"))
    meta = json.loads((samples.parent / "samples.meta.json").read_text())
    assert meta["generated"] == 0 and meta["id"] == gen
