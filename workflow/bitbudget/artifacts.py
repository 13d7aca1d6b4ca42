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


def fix_command(*paths: str | Path) -> str:
    """What to do about a corrupt or incomplete artifact: a command that recomputes it.

    Every artifact is a target of the default rule, so the plain rerun rebuilds what was
    removed and what depends on it, and nothing else.
    """
    quoted = " ".join(str(p) for p in paths)
    return (
        f"Fix: `rm -rf {quoted}`, then rerun snakemake as before (e.g. `snakemake -c2`): "
        "it recomputes only this artifact and what depends on it."
    )


def write_meta(data_path: str | Path, key: dict, artifact_id: str | None = None, **extra: Any) -> dict:
    """Write `<stem>.meta.json` beside `data_path`, after the data: its full key, id and checksum.

    The meta file is written last, so its presence means the artifact is complete. `artifact_id`
    is the id in the artifact's path when that id hashes only part of `key`.
    """
    data_path = Path(data_path)
    meta = {
        "artifact": data_path.name,
        "id": artifact_id or content_id(key),
        "key": key,
        "sha256": sha256_file(data_path),
        "bytes": data_path.stat().st_size,
        **extra,
    }
    write_json(meta_path(data_path), meta)
    return meta


def write_directory_meta(directory: str | Path, key: dict, data_name: str = "model.safetensors", **extra: Any) -> dict:
    """Metadata of a directory artifact (a checkpoint): a checksum of every file in it."""
    directory = Path(directory)
    files = {
        str(f.relative_to(directory)): sha256_file(f)
        for f in sorted(directory.rglob("*"))
        if f.is_file() and not f.name.endswith(f".{META_NAME}")
    }
    meta = {
        "artifact": data_name,
        "id": content_id(key),
        "key": key,
        "sha256": files.get(data_name),
        "files": files,
        "bytes": sum((directory / name).stat().st_size for name in files),
        **extra,
    }
    write_json(meta_path(directory / data_name), meta)
    return meta


def is_complete(data_path: str | Path) -> bool:
    """Data and its metadata are both there (cheap: no checksum). Either alone means missing."""
    return Path(data_path).exists() and meta_path(data_path).exists()


def incomplete_artifacts(paths) -> list[str]:
    """Artifacts whose data is there without its metadata (a directory artifact: without
    `model.meta.json`). Existence checks only: planning a large study stays fast."""
    incomplete = []
    for path in paths:
        data = Path(path)
        if data.is_dir():
            if not meta_path(data / "model.safetensors").exists():
                incomplete.append(str(path))
        elif data.exists() and not meta_path(data).exists():
            incomplete.append(str(path))
    return incomplete


def read_meta(data_path: str | Path, remove: tuple = ()) -> dict:
    """The metadata of `data_path`, or an ArtifactError naming the file and the fix."""
    data_path = Path(data_path)
    meta_file = meta_path(data_path)
    fix = fix_command(*(remove or (data_path, meta_file)))
    if not meta_file.exists():
        state = "exists" if data_path.exists() else "is missing too"
        raise ArtifactError(
            f"Metadata {meta_file} is missing (the artifact {data_path} {state}): "
            f"the artifact was never completed or was damaged. {fix}"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"Metadata {meta_file} is not valid JSON ({error}). {fix}") from error
    if not isinstance(meta, dict) or "sha256" not in meta:
        raise ArtifactError(f"Metadata {meta_file} has no sha256 checksum. {fix}")
    return meta


def verify(data_path: str | Path) -> dict:
    """Check `data_path` against its metadata; raise ArtifactError naming the file and the fix."""
    data_path = Path(data_path)
    meta_file = meta_path(data_path)
    fix = fix_command(data_path, meta_file)
    meta = read_meta(data_path)
    if not data_path.exists():
        raise ArtifactError(f"Artifact {data_path} is missing (its metadata {meta_file} is there). {fix}")
    actual = sha256_file(data_path)
    if actual != meta["sha256"]:
        raise ArtifactError(
            f"Artifact {data_path} does not match its metadata checksum "
            f"(expected {meta['sha256'][:12]}, found {actual[:12]}): it was modified or truncated. {fix}"
        )
    return meta


def verify_directory(directory: str | Path, data_name: str = "model.safetensors") -> dict:
    """Check every file of a directory artifact (a checkpoint) against its metadata."""
    directory = Path(directory)
    fix = fix_command(directory)
    meta = read_meta(directory / data_name, remove=(directory,))
    files = meta.get("files") or {data_name: meta["sha256"]}  # older metadata: the weights only
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"Artifact {path} is missing (listed in {meta_path(directory / data_name)}). {fix}")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"Artifact {path} does not match its metadata checksum (expected {expected[:12]}, "
                f"found {actual[:12]}): it was modified or truncated. {fix}"
            )
    return meta


def read_parquet_verified(path: str | Path) -> pd.DataFrame:
    verify(path)
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise ArtifactError(
            f"Artifact {path} cannot be read as parquet ({type(error).__name__}: {error}). "
            f"{fix_command(path, meta_path(path))}"
        ) from error


def read_json_verified(path: str | Path) -> Any:
    verify(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(
            f"Artifact {path} is not valid JSON ({error}). {fix_command(path, meta_path(path))}"
        ) from error


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporary files and directories a killed writer left in `directory`.

    Only call this from the one job that writes `directory` (no other writer is running there).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and (p.name.endswith(".tmp") or ".tmp-" in p.name)]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale
