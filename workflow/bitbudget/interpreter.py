"""Run a stage in another Python interpreter (an engine's own virtual environment).

vLLM and llm-compressor pin their own torch and compressed-tensors, so they live in
separate venvs (envs/install.sh). A stage whose config names such an interpreter
re-executes itself there as `python -m <module> --spec spec.json --output <path>`,
forwarding SIGTERM/SIGINT to the child and exiting with the child's exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from bitbudget.logs import file_handlers

log = logging.getLogger(__name__)

REEXEC_ENV = "BITBUDGET_INTERPRETER"


class ChildExit(SystemExit):
    """The stage failed in the other interpreter; the exit status is the child's."""


def other_interpreter(python: str | None) -> str | None:
    """The interpreter to re-execute in, or None when it is this one (or none is named).

    Paths are compared without resolving symlinks: a venv's python links to its base
    interpreter but runs with the venv's site-packages.
    """
    if not python or os.environ.get(REEXEC_ENV):
        return None
    path = Path(python).expanduser()
    if not path.is_absolute() and os.sep not in python:
        from shutil import which

        found = which(python)
        path = Path(found) if found else path
    path = Path(os.path.abspath(path))
    if path == Path(os.path.abspath(sys.executable)):
        return None
    if not path.exists():
        raise FileNotFoundError(
            f"interpreter {python!r} from the config does not exist; create it with "
            f"envs/install.sh (vllm or llmcompressor) or remove the `python` field to run here"
        )
    return str(path)


def _log_file() -> str | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def run_in_interpreter(python: str, module: str, spec: dict, output: str | Path, stop_requested=lambda: False) -> None:
    """Run `python -m module` on `spec`; SIGTERM/SIGINT reach the child; raise ChildExit on failure."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="spec-", delete=False) as handle:
        json.dump(spec, handle)
        spec_file = handle.name
    command = [python, "-m", module, "--spec", spec_file, "--output", str(output)]
    log_file = _log_file()
    if log_file:
        command += ["--log", log_file]
    log.info("running %s in %s", module, python)
    env = {**os.environ, REEXEC_ENV: python}
    child = subprocess.Popen(command, env=env)
    previous = {}

    def forward(signum, frame):
        if child.poll() is None:
            child.send_signal(signum)
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)

    try:
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread: poll the stop flag instead
            pass
        sent = False
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stop_requested() and not sent:
                    child.send_signal(signal.SIGTERM)
                    sent = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.kill()
            child.wait()
        Path(spec_file).unlink(missing_ok=True)
    if code != 0:
        status = code if code > 0 else 128 - code
        raise ChildExit(status)


def cli_arguments(description: str, argv=None) -> argparse.Namespace:
    """Parse `--spec --output [--log]` and send logging to stderr (and the rule's log file)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True, help="JSON file with the stage's spec")
    parser.add_argument("--output", required=True)
    parser.add_argument("--log", help="append logging to this file too")
    args = parser.parse_args(argv)
    handlers = [logging.StreamHandler(sys.stderr)]
    if args.log:  # the rule's log and its history (bitbudget.logs), the run's header already written
        handlers += file_handlers(args.log, header=False)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args
