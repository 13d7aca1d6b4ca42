"""Question sets: synthetic tasks, local files, or hub datasets through `datasets`.

Every loader returns records {question_id, problem, answer, choices, difficulty}.
"""

from __future__ import annotations

from pathlib import Path

QUESTION_FIELDS = ("question_id", "problem", "answer", "choices", "difficulty")


def load_questions(dataset: dict) -> list[dict]:
    source = dataset["source"]
    if source == "synthetic":
        from bitbudget.tasks import make_synthetic_questions

        spec = dataset["synthetic"]
        questions = make_synthetic_questions(
            dataset["kind"], spec["n_questions"], spec["seed"], spec["min_difficulty"], spec["max_difficulty"]
        )
    elif source == "file":
        questions = _load_file(Path(dataset["file"]), dataset.get("fields", {}))
    else:
        questions = _load_hub(dataset["hub"], dataset.get("fields", {}))
    limit = dataset.get("max_questions")
    return questions[:limit] if limit else questions


def _rename(record: dict, fields: dict) -> dict:
    out = {name: record.get(fields.get(name, name)) for name in QUESTION_FIELDS}
    out["question_id"] = str(out["question_id"])
    out["answer"] = str(out["answer"])
    return out


def _load_file(path: Path, fields: dict) -> list[dict]:
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist; fix the 'file' field of the dataset")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
    return [_rename(record, fields) for record in frame.to_dict("records")]


def _load_hub(hub: dict, fields: dict) -> list[dict]:
    import datasets

    table = datasets.load_dataset(hub["path"], hub.get("name"), split=hub["split"], revision=hub.get("revision"))
    return [_rename(record, fields) for record in table]
