"""The local-gpu profile: concurrent GPU jobs get distinct CUDA_VISIBLE_DEVICES (fake device ids)."""

from __future__ import annotations

from pathlib import Path

import json
import textwrap

import pytest

PROFILES = Path(__file__).resolve().parents[2] / "profiles"

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(300)]

SNAKEFILE = textwrap.dedent(
    """
    import json, os, time
    from bitbudget.gpu_slots import acquire_gpus

    rule all:
        input: expand("rec/{i}.json", i=range(4))

    rule gpu_job:
        output: "rec/{i}.json"
        resources: gpu=1
        run:
            with acquire_gpus(resources.gpu) as ids:
                start = time.time()
                visible = os.environ["CUDA_VISIBLE_DEVICES"]
                time.sleep(2)
                end = time.time()
            with open(output[0], "w") as f:
                json.dump({"start": start, "end": end, "devices": ids, "visible": visible}, f)
    """
)


def _records(wd):
    return [json.loads((wd / "rec" / f"{i}.json").read_text()) for i in range(4)]


def _check(records, n_devices):
    overlapping = 0
    for i, a in enumerate(records):
        assert a["visible"] == ",".join(a["devices"]) and len(a["devices"]) == 1
        for b in records[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                overlapping += 1
                assert a["devices"] != b["devices"], (a, b)
    # never more holders at once than devices
    for r in records:
        assert sum(o["start"] <= r["start"] < o["end"] for o in records) <= n_devices
    return overlapping


@pytest.mark.parametrize("gpu_limit", [2, 4])
def test_concurrent_jobs_get_distinct_devices(run_snakemake, tmp_path, gpu_limit):
    """gpu=2: Snakemake runs two at a time; gpu=4 (more than the two devices): the locks serialise."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    env = {"BITBUDGET_GPU_DEVICES": "0,1", "BITBUDGET_GPU_LOCK_DIR": str(tmp_path / "locks")}
    res = run_snakemake(
        ["--profile", str(PROFILES / "local-gpu"), "-c4", "--resources", f"gpu={gpu_limit}"],
        cwd=tmp_path, env=env, timeout=240,
    )
    assert res.returncode == 0, res.output[-3000:]
    records = _records(tmp_path)
    assert {r["devices"][0] for r in records} <= {"0", "1"}
    assert _check(records, 2) > 0  # jobs did run concurrently


def test_profile_limits_gpu_jobs_to_one_by_default(run_snakemake, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    env = {"BITBUDGET_GPU_DEVICES": "0,1,2", "BITBUDGET_GPU_LOCK_DIR": str(tmp_path / "locks")}
    res = run_snakemake(["--profile", str(PROFILES / "local-gpu"), "-c4"], cwd=tmp_path, env=env, timeout=240)
    assert res.returncode == 0, res.output[-3000:]
    assert _check(_records(tmp_path), 1) == 0
