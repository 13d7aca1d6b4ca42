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


def test_metadata_without_data_and_data_without_metadata_name_the_fix(tmp_path):
    path = tmp_path / "grades" / "abc" / "grades.parquet"
    artifacts.write_parquet(path, pd.DataFrame({"x": [1]}))
    assert artifacts.incomplete_artifacts([path]) == [str(path)]  # data, no metadata: incomplete
    with pytest.raises(artifacts.ArtifactError, match="never completed") as error:
        artifacts.read_parquet_verified(path)
    assert f"`rm -rf {path} {artifacts.meta_path(path)}`" in str(error.value)
    artifacts.write_meta(path, {"what": "test"})
    assert artifacts.incomplete_artifacts([path]) == []
    path.unlink()
    with pytest.raises(artifacts.ArtifactError, match=f"Artifact {path} is missing"):
        artifacts.read_parquet_verified(path)


def test_undecodable_metadata_and_data_name_the_file(tmp_path):
    path = tmp_path / "threshold.json"
    artifacts.write_json(path, {"estimate": 1.0})
    artifacts.write_meta(path, {"what": "test"})
    assert artifacts.read_json_verified(path) == {"estimate": 1.0}
    artifacts.meta_path(path).write_bytes(b'{"sha256": "\xff')
    with pytest.raises(artifacts.ArtifactError, match=f"Metadata {artifacts.meta_path(path)} is not valid JSON"):
        artifacts.read_json_verified(path)
    table = tmp_path / "t.parquet"
    table.write_bytes(b"PAR1 not a parquet file")
    artifacts.write_meta(table, {"what": "test"})  # checksum of the damaged bytes: decoding fails
    with pytest.raises(artifacts.ArtifactError, match=f"Artifact {table} cannot be read as parquet"):
        artifacts.read_parquet_verified(table)


def test_metadata_id_is_the_directory_id_when_given(tmp_path):
    path = tmp_path / "samples.parquet"
    artifacts.write_parquet(path, pd.DataFrame({"x": [1]}))
    meta = artifacts.write_meta(path, {"trace": "t", "budgets": [1], "trace_key": {}}, artifact_id="abc")
    assert meta["id"] == "abc"


def test_directory_artifact_checks_every_file(tmp_path):
    ckpt = tmp_path / "ckpt"
    with artifacts.atomic_directory(ckpt) as tmp:
        (tmp / "model.safetensors").write_bytes(b"weights")
        (tmp / "config.json").write_text("{}")
    assert artifacts.incomplete_artifacts([ckpt]) == [str(ckpt)]
    artifacts.write_directory_meta(ckpt, {"what": "test"})
    assert artifacts.verify_directory(ckpt)["files"].keys() == {"model.safetensors", "config.json"}
    (ckpt / "config.json").write_text('{"x": 1}')
    with pytest.raises(artifacts.ArtifactError) as error:
        artifacts.verify_directory(ckpt)
    assert str(ckpt / "config.json") in str(error.value) and f"`rm -rf {ckpt}`" in str(error.value)


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".grades.parquet.abc.tmp").write_text("half")
    (tmp_path / ".ckpt.tmp-xyz").mkdir()
    (tmp_path / "grades.parquet").write_text("kept")
    assert len(artifacts.remove_stale_temporaries(tmp_path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["grades.parquet"]
