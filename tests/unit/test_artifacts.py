import pandas as pd
import pytest

from bitbudget import artifacts


def test_content_id_depends_only_on_content():
    assert artifacts.content_id({"a": 1, "b": [1, 2]}) == artifacts.content_id({"b": [1, 2], "a": 1})
    assert artifacts.content_id({"a": 1}) != artifacts.content_id({"a": 2})
    assert len(artifacts.content_id({})) == artifacts.ID_LENGTH


def test_verified_read_roundtrip(tmp_path):
    path = tmp_path / "table.parquet"
    artifacts.write_parquet(path, pd.DataFrame({"x": [1, 2, 3]}))
    meta = artifacts.write_meta(path, {"what": "test"})
    assert meta["key"] == {"what": "test"}
    assert artifacts.read_parquet_verified(path)["x"].tolist() == [1, 2, 3]


def test_modified_artifact_is_rejected_with_the_fix(tmp_path):
    path = tmp_path / "gen" / "samples.parquet"
    artifacts.write_parquet(path, pd.DataFrame({"x": [1]}))
    artifacts.write_meta(path, {"what": "test"})
    artifacts.write_parquet(path, pd.DataFrame({"x": [2]}))
    with pytest.raises(artifacts.ArtifactError) as error:
        artifacts.read_parquet_verified(path)
    assert str(path) in str(error.value) and "rerun snakemake" in str(error.value)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.txt"

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artifacts.atomic_write(path, crash)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    out = tmp_path / "ckpt"
    with artifacts.atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_directory(out) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
