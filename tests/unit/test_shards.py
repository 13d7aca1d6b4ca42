"""Trace shards are verified where they are read: an edit, a flipped byte or a truncation is
refused naming the shard and the fix; partial files of a killed writer are removed."""

from __future__ import annotations

import json

import pytest

from bitbudget import shards

SAMPLES = [
    {"sample_idx": 1, "think_ids": [5, 6, 7], "forks": {"16": {"ids": [9]}}},
    {"sample_idx": 0, "think_ids": [1, 2, 3], "forks": {}},
]


@pytest.fixture
def trace(tmp_path):
    shards.write_shard(tmp_path, "q1", SAMPLES)
    return tmp_path


def test_written_shard_reads_back_verified(trace):
    shard = shards.read_shard(trace, "q1")
    assert [s["sample_idx"] for s in shard["samples"]] == [0, 1]
    assert shards.read_shard(trace, "q2") is None


def check_refused(trace, detail: str):
    path = shards.shard_path(trace, "q1")
    with pytest.raises(shards.ShardError) as error:
        shards.read_shard(trace, "q1")
    message = str(error.value)
    assert str(path) in message and detail in message and f"`rm {path}`" in message


def test_edited_shard_that_is_still_valid_json_is_refused(trace):
    path = shards.shard_path(trace, "q1")
    shard = json.loads(path.read_text())
    ids = shard["samples"][0]["think_ids"]
    ids[0], ids[1] = ids[1], ids[0]  # two token ids swapped
    path.write_text(json.dumps(shard))
    check_refused(trace, "does not match its checksum")


def test_flipped_byte_is_refused_naming_the_shard(trace):
    path = shards.shard_path(trace, "q1")
    data = bytearray(path.read_bytes())
    data[5] ^= 0xC0
    path.write_bytes(bytes(data))
    check_refused(trace, "UnicodeDecodeError")


def test_truncated_shard_is_refused_naming_the_shard(trace):
    path = shards.shard_path(trace, "q1")
    path.write_bytes(path.read_bytes()[:-20])
    check_refused(trace, "JSONDecodeError")


def test_shard_of_another_question_is_refused(trace):
    shards.shard_path(trace, "q1").rename(shards.shard_path(trace, "q9"))
    with pytest.raises(shards.ShardError, match="holds question 'q1', not 'q9'"):
        shards.read_shard(trace, "q9")


def test_shard_written_before_checksums_still_reads(trace):
    path = shards.shard_path(trace, "q1")
    shard = json.loads(path.read_text())
    del shard["sha256"]
    path.write_text(json.dumps(shard))
    assert shards.read_shard(trace, "q1")["samples"] == shard["samples"]


def test_partial_files_of_a_killed_writer_are_removed(trace):
    stale = shards.shard_path(trace, "q2").parent / ".q2.json.x1y2.tmp"
    stale.write_text('{"question_id": "q2", "sam')
    removed = shards.remove_stale_temporaries(trace)
    assert removed == [stale] and not stale.exists()
    assert shards.read_shard(trace, "q1") is not None
