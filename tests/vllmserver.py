"""The test run's one vLLM process (tests/vllm/engine_server.py in the vLLM venv): started on
first use by the session fixture `vllm_server`, shared by tests/vllm and tests/qwen3."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from multiprocessing.connection import Client
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SERVER = REPO / "tests" / "vllm" / "engine_server.py"
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 1500
STOP_TIMEOUT_S = 10
# one CPU KV cache of 1 GiB per started engine, the two cores for its threads
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "2"}


def plain_specs(jobs: list[dict]) -> list[dict]:
    """The jobs with their specs in their JSON form (bitbudget.enginespec.EngineSpec.to_dict)."""
    return [{**job, "spec": job["spec"].to_dict()} for job in jobs]


class VLLMServer:
    def __init__(self, rundir: Path):
        self.address = str(rundir / "vllm.sock")
        self.log = rundir / "vllm-server.log"
        self.key = secrets.token_hex(16)
        env = {**os.environ, **SERVER_ENV, "BITBUDGET_TEST_SERVER_KEY": self.key,
               "PYTHONPATH": str(REPO / "workflow")}
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(VLLM_PYTHON), str(SERVER), self.address], cwd=rundir, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not Path(self.address).exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the vLLM test server did not start:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def request(self, op: str, jobs: list[dict], workdir: Path, timeout: float = REQUEST_TIMEOUT_S):
        with Client(self.address, family="AF_UNIX", authkey=self.key.encode()) as connection:
            connection.send_bytes(json.dumps({"op": op, "workdir": str(workdir), "jobs": jobs}).encode())
            if not connection.poll(timeout):
                raise AssertionError(f"the vLLM test server gave no answer in {timeout} s:\n{self.log_tail()}")
            reply = json.loads(connection.recv_bytes())
        if "error" in reply:
            raise AssertionError(f"vLLM job failed:\n{reply['error']}\n--- server log:\n{self.log_tail()}")
        return reply["ok"]

    def generations(self, jobs: list[dict], workdir: Path) -> dict:
        """Generation jobs ({name, spec: EngineSpec, output}) with write_generation; their metadata by name."""
        return self.request("generations", plain_specs(jobs), workdir)

    def calls(self, jobs: list[dict], workdir: Path) -> None:
        """Engine calls ({spec: EngineSpec, questions}) at the spec's budgets that write shards only."""
        self.request("calls", plain_specs(jobs), workdir)

    def stop(self) -> None:
        """End the server and its engine processes (its process group) without waiting for
        vLLM's orderly shutdown: nothing it holds is kept."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue
