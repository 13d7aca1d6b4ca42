"""Artifacts are published with the permissions of a plain write: the process umask decides.

A temp file renamed into place would otherwise keep mkstemp's private 0600 (mkdtemp's 0700),
and on a shared cluster the group could not open a report or a checkpoint.
"""
import os
import stat
from contextlib import contextmanager

import pandas as pd
import pytest

from bitbudget import artifacts

UMASKS = [0o022, 0o002, 0o027, 0o077]


@contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_the_process_umask_and_leaves_it():
    for mask in UMASKS:
        with umask(mask):
            assert artifacts.current_umask() == mask
            assert artifacts.current_umask() == mask  # reading did not change it


@pytest.mark.parametrize("mask", UMASKS)
def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path, mask):
    with umask(mask):
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        text, table = tmp_path / "index.html", tmp_path / "t.parquet"
        artifacts.write_text(text, "<html></html>")
        artifacts.write_parquet(table, pd.DataFrame({"x": [1]}))
        meta = artifacts.write_meta(table, {"what": "test"})
    assert meta["key"] == {"what": "test"}
    for path in (text, table, artifacts.meta_path(table)):
        assert mode(path) == mode(plain) == 0o666 & ~mask, path


def test_default_umask_makes_artifacts_group_readable(tmp_path):
    with umask(0o022):
        artifacts.write_text(tmp_path / "index.html", "<html></html>")
    assert mode(tmp_path / "index.html") & stat.S_IRGRP


@pytest.mark.parametrize("mask", UMASKS)
def test_atomic_directory_publishes_tree_with_the_umask(tmp_path, mask):
    with umask(mask):
        (tmp_path / "plain").mkdir()
        with artifacts.atomic_directory(tmp_path / "ckpt") as tmp:
            (tmp / "config.json").write_text("{}")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "weights.bin").write_bytes(b"\0")
    out = tmp_path / "ckpt"
    assert mode(out) == mode(out / "sub") == mode(tmp_path / "plain") == 0o777 & ~mask
    assert mode(out / "config.json") == mode(out / "sub" / "weights.bin") == 0o666 & ~mask
