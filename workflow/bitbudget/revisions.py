"""Model revisions: the pinned `revision` of a model reaches every loader, or the run stops.

A model's `revision` is part of its checkpoint id, so loading anything else under that id
would be a lie. Three kinds of source:

- a hub id (``org/name``): the loaders get ``revision=`` (transformers, vLLM,
  llm-compressor); with ``HF_HUB_OFFLINE=1`` that is the snapshot of that revision in the hub
  cache, never ``main``;
- a local git checkout: its HEAD must be the pinned commit (else the run stops naming the
  fix), because from_pretrained reads the working tree, not a revision;
- a plain local directory has no revisions: a pin on it stops the run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


class RevisionError(RuntimeError):
    """A pinned revision cannot be honoured for a model source."""


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def loader_kwargs(path: str, revision: str | None) -> dict:
    """Keyword arguments that make a transformers/vLLM loader read `path` at `revision`."""
    if not revision:
        return {}
    directory = Path(path)
    if not directory.is_dir():
        return {"revision": revision}
    toplevel = _git(directory, "rev-parse", "--show-toplevel")
    if toplevel is None or Path(toplevel).resolve() != directory.resolve():  # not a repository of its own
        raise RevisionError(
            f"model {path} pins revision {revision!r} but is a plain directory without git history, "
            f"so the revision cannot be checked; fix: remove `revision` from the model's config or "
            f"point `path` at a git checkout or a hub id"
        )
    wanted = _git(directory, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if wanted is None:
        raise RevisionError(f"model {path}: revision {revision!r} is not in its git history; fix: `git -C {path} fetch` or correct `revision`")
    head = _git(directory, "rev-parse", "HEAD")
    dirty = _git(directory, "status", "--porcelain", "--untracked-files=no")
    if head != wanted or dirty:
        state = "has uncommitted changes" if head == wanted else f"is checked out at {head}"
        raise RevisionError(
            f"model {path} pins revision {revision!r} ({wanted}) but {state}; "
            f"fix: `git -C {path} checkout {revision}` (and commit or discard local changes)"
        )
    return {}


def local_snapshot(path: str, revision: str | None) -> Path:
    """A local directory holding `path` at `revision` (hub ids come from the hub cache or hub)."""
    kwargs = loader_kwargs(path, revision)
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=path, **kwargs))
