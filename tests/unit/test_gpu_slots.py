"""bitbudget.gpu_slots: distinct devices for concurrent holders, released on crash."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

from bitbudget import gpu_slots
from bitbudget.gpu_slots import GpuUnavailable, acquire_gpus, default_devices

CTX = mp.get_context("spawn")


def _hold_and_record(n, devices, lock_dir, hold_s, queue):
    with acquire_gpus(n, devices, lock_dir, poll=0.02) as ids:
        start = time.monotonic()
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(ids)
        time.sleep(hold_s)
        queue.put((tuple(ids), start, time.monotonic()))


def _hold_forever(devices, lock_dir, ready):
    with acquire_gpus(1, devices, lock_dir) as ids:
        ready.put(ids)
        time.sleep(600)


def test_distinct_devices_in_one_process(tmp_path):
    with acquire_gpus(1, ["0", "1", "2"], tmp_path) as a, acquire_gpus(2, ["0", "1", "2"], tmp_path) as b:
        assert len(a) == 1 and len(b) == 2
        assert not set(a) & set(b)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(b)
    with pytest.raises(GpuUnavailable):
        with acquire_gpus(3, ["0", "1"], tmp_path):
            pass


def test_env_is_restored_and_zero_gpus_hides_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    with acquire_gpus(0, ["0"], tmp_path) as ids:
        assert ids == [] and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"


def test_timeout_when_all_busy(tmp_path):
    with acquire_gpus(1, ["0"], tmp_path):
        t0 = time.monotonic()
        with pytest.raises(GpuUnavailable):
            with acquire_gpus(1, ["0"], tmp_path, timeout=0.3, poll=0.05):
                pass
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("n_per_job", [1, 2])
def test_concurrent_processes_never_share_a_device(tmp_path, n_per_job):
    devices = ["0", "1", "2", "3"]
    queue = CTX.Queue()
    procs = [
        CTX.Process(target=_hold_and_record, args=(n_per_job, devices, str(tmp_path), 0.3, queue)) for _ in range(8)
    ]
    for p in procs:
        p.start()
    records = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert all(len(ids) == n_per_job and set(ids) <= set(devices) for ids, _, _ in records)
    overlaps = 0
    for i, (ids_a, s_a, e_a) in enumerate(records):
        for ids_b, s_b, e_b in records[i + 1 :]:
            if s_a < e_b and s_b < e_a:  # held at the same time
                overlaps += 1
                assert not set(ids_a) & set(ids_b), (ids_a, ids_b)
    assert overlaps > 0  # the test did exercise concurrency


def test_crashed_holder_releases_its_device(tmp_path):
    ready = CTX.Queue()
    p = CTX.Process(target=_hold_forever, args=(["0"], str(tmp_path), ready))
    p.start()
    assert ready.get(timeout=60) == ["0"]
    with pytest.raises(GpuUnavailable):
        with acquire_gpus(1, ["0"], tmp_path, timeout=0.2, poll=0.05):
            pass
    os.kill(p.pid, signal.SIGKILL)
    p.join(timeout=30)
    with acquire_gpus(1, ["0"], tmp_path, timeout=10, poll=0.05) as ids:
        assert ids == ["0"]


def test_default_devices_order(monkeypatch):
    monkeypatch.setattr(gpu_slots, "_nvidia_smi_devices", lambda: ["0", "1"])
    assert default_devices({"BITBUDGET_GPU_DEVICES": "2, 3"}) == (["2", "3"], True)
    # inside SLURM: the job's own devices, no locks (SLURM isolates them already)
    assert default_devices({"SLURM_JOB_ID": "5", "CUDA_VISIBLE_DEVICES": "1"}) == (["1"], False)
    assert default_devices({"CUDA_VISIBLE_DEVICES": "4,5"}) == (["4", "5"], True)
    assert default_devices({}) == (["0", "1"], True)
    monkeypatch.setattr(gpu_slots, "_nvidia_smi_devices", lambda: [])
    assert default_devices({}) == ([], True)


def test_command_wrapper_holds_devices_while_command_runs(tmp_path):
    env = {**os.environ, "BITBUDGET_GPU_DEVICES": "0,1"}
    cmd = [sys.executable, "-m", "bitbudget.gpu_slots", "--gpus", "1", "--lock-dir", str(tmp_path), "--"]
    first = subprocess.Popen([*cmd, "sh", "-c", "echo $CUDA_VISIBLE_DEVICES; sleep 2"], env=env, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "0"
    second = subprocess.run([*cmd, "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"], env=env, capture_output=True, text=True, timeout=30)
    assert second.stdout.strip() == "1"
    first.wait(timeout=30)
