"""Distinct GPUs for concurrent jobs on one machine.

Snakemake's ``--resources gpu=N`` keeps the *number* of GPUs in use at or below N; it does not
say *which* GPU a job gets. :func:`acquire_gpus` picks free devices with one lock file per device
(``fcntl.flock``), so concurrent jobs never share a device, and sets ``CUDA_VISIBLE_DEVICES``.
The kernel drops a ``flock`` when its holder dies, so a crashed job never leaves a device taken.

Call it before torch or vLLM is imported (they read ``CUDA_VISIBLE_DEVICES`` once)::

    with acquire_gpus(snakemake.resources.gpu) as ids:
        import torch  # sees only `ids`, as cuda:0..len(ids)-1
        ...

Or wrap a command: ``python -m bitbudget.gpu_slots --gpus 1 -- python generate.py ...``.

Device pool, first found: the ``devices`` argument; ``BITBUDGET_GPU_DEVICES`` ("0,1,2,3");
inside a SLURM job, the devices SLURM gave the job (no locking: SLURM already isolates them);
an inherited ``CUDA_VISIBLE_DEVICES``; the GPUs listed by ``nvidia-smi -L``; else none (CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["acquire_gpus", "default_devices", "GpuUnavailable"]

ENV_DEVICES = "BITBUDGET_GPU_DEVICES"
ENV_LOCK_DIR = "BITBUDGET_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = Path(".snakemake") / "gpu-slots"


class GpuUnavailable(RuntimeError):
    """More GPUs were asked for than the pool has, or none became free in time."""


def _split(value: str) -> list[str]:
    return [d.strip() for d in value.split(",") if d.strip()]


def _nvidia_smi_devices() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def default_devices(environ: dict[str, str] | None = None) -> tuple[list[str], bool]:
    """The device pool and whether it must be shared through locks.

    Returns ``(devices, needs_locks)``; ``needs_locks`` is False when a scheduler (SLURM) has
    already given this job its own devices.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_DEVICES, "").strip():
        return _split(env[ENV_DEVICES]), True
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if "SLURM_JOB_ID" in env and visible is not None:
        return _split(visible), False
    if visible is not None and visible.strip():
        return _split(visible), True
    return _nvidia_smi_devices(), True


def _lock_dir(lock_dir: str | os.PathLike[str] | None) -> Path:
    if lock_dir is not None:
        return Path(lock_dir)
    return Path(os.environ.get(ENV_LOCK_DIR) or DEFAULT_LOCK_DIR)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # record the holder, for people looking at a busy slot
    os.ftruncate(fd, 0)
    os.write(fd, f"{socket.gethostname()} pid={os.getpid()} since={time.time():.0f}\n".encode())
    return fd


def _release(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(fd)


def _take(n: int, devices: Sequence[str], lock_dir: Path, timeout: float | None, poll: float) -> tuple[list[str], list[int]]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ids: list[str] = []
        fds: list[int] = []
        for dev in devices:
            # the host name keeps two machines that share the directory (NFS) apart
            fd = _try_lock(lock_dir / f"{host}-gpu{dev}.lock")
            if fd is not None:
                ids.append(dev)
                fds.append(fd)
                if len(ids) == n:
                    return ids, fds
        # all-or-nothing: never sit on part of a request while waiting (no deadlock between jobs)
        _release(fds)
        if deadline is not None and time.monotonic() >= deadline:
            raise GpuUnavailable(f"no {n} free GPU(s) among {list(devices)} within {timeout} s (locks in {lock_dir})")
        time.sleep(poll)


def _hold(
    n: int, devices: Sequence[str] | None, lock_dir: str | os.PathLike[str] | None, timeout: float | None, poll: float
) -> tuple[list[str], list[int]]:
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    needs_locks = True
    if devices is None:
        devices, needs_locks = default_devices()
    devices = [str(d) for d in devices]
    if len(set(devices)) != len(devices):
        raise ValueError(f"duplicate device ids in {devices}")
    if n > len(devices):
        raise GpuUnavailable(f"{n} GPU(s) requested but only {len(devices)} available: {devices}")
    if n == 0:
        return [], []
    if not needs_locks:
        return list(devices[:n]), []
    return _take(n, devices, _lock_dir(lock_dir), timeout, poll)


@contextlib.contextmanager
def acquire_gpus(
    n: int,
    devices: Sequence[str] | None = None,
    lock_dir: str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = None,
    poll: float = 0.5,
    set_env: bool = True,
) -> Iterator[list[str]]:
    """Hold ``n`` distinct devices for the ``with`` block; yields their ids.

    Waits (polling every ``poll`` s, at most ``timeout`` s; None waits forever) until ``n``
    devices are free. Sets ``CUDA_VISIBLE_DEVICES`` to the ids (to "" when ``n`` is 0, so a CPU
    job does not touch a GPU) and restores the previous value afterwards.
    """
    ids, fds = _hold(n, devices, lock_dir, timeout, poll)
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    if set_env:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    try:
        yield ids
    finally:
        _release(fds)
        if set_env:
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command holding N GPUs: python -m bitbudget.gpu_slots --gpus N -- CMD ...

    The command replaces this process (exec) and inherits the locked files, so the devices are
    held exactly as long as the command runs.
    """
    parser = argparse.ArgumentParser(prog="python -m bitbudget.gpu_slots", description=main.__doc__)
    parser.add_argument("--gpus", type=int, required=True)
    parser.add_argument("--devices", help="comma list; default: BITBUDGET_GPU_DEVICES, SLURM, nvidia-smi")
    parser.add_argument("--lock-dir")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    devices = _split(args.devices) if args.devices else None
    ids, fds = _hold(args.gpus, devices, args.lock_dir, args.timeout, 0.5)
    for fd in fds:
        os.set_inheritable(fd, True)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    os.execvp(command[0], command)
    return 127  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
