"""Content-addressed artifacts: canonical ids, atomic writes, metadata with checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

ID_LENGTH = 12
META_NAME = "meta.json"
# Modes before the umask, as open() and mkdir() use: a published artifact gets exactly the
# permissions a plain write would give it (group-readable under the usual 022 or 002 umask).
FILE_MODE = 0o666
DIR_MODE = 0o777


class ArtifactError(RuntimeError):
    """An artifact on disk is missing, corrupt or does not match its metadata."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def content_id(key: dict) -> str:
    """Short hash of the canonical JSON of exactly the fields that change an artifact."""
    return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:ID_LENGTH]


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it (Linux reports it in /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # elsewhere: set and restore, the only portable way to read it
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then rename onto `path`, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE & ~current_umask())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; on success it replaces `out_dir` whole.

    mkdtemp makes the directory private (0700); it is published with the process umask
    like any file the process creates. On an error the temporary directory is removed and
    `out_dir` is untouched.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        umask = current_umask()
        for root, dirs, files in os.walk(tmp):
            os.chmod(root, DIR_MODE & ~umask)
            for name in files:
                os.chmod(os.path.join(root, name), FILE_MODE & ~umask)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def meta_path(data_path: str | Path) -> Path:
    data_path = Path(data_path)
    return data_path.parent / f"{data_path.stem}.{META_NAME}"


def write_meta(data_path: str | Path, key: dict, **extra: Any) -> dict:
    """Write `<stem>.meta.json` beside `data_path`: its full key, id and checksum."""
    meta = {
        "artifact": Path(data_path).name,
        "id": content_id(key),
        "key": key,
        "sha256": sha256_file(data_path),
        "bytes": Path(data_path).stat().st_size,
        **extra,
    }
    write_json(meta_path(data_path), meta)
    return meta


def verify(data_path: str | Path) -> dict:
    """Check `data_path` against its metadata; raise ArtifactError naming the fix."""
    data_path = Path(data_path)
    meta_file = meta_path(data_path)
    redo = (
        f"Delete {data_path.parent} and rerun snakemake to recompute it "
        f"(or `snakemake --forcerun` the rule that writes {data_path.name})."
    )
    if not data_path.exists() or not meta_file.exists():
        raise ArtifactError(f"Artifact {data_path} or its metadata {meta_file} is missing. {redo}")
    meta = json.loads(meta_file.read_text())
    actual = sha256_file(data_path)
    if actual != meta["sha256"]:
        raise ArtifactError(
            f"Artifact {data_path} does not match its metadata checksum "
            f"(expected {meta['sha256'][:12]}, found {actual[:12]}): it was modified or truncated. {redo}"
        )
    return meta


def read_parquet_verified(path: str | Path) -> pd.DataFrame:
    verify(path)
    return pd.read_parquet(path)
