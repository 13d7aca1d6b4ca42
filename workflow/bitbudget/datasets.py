"""Question sets: synthetic tasks, local files, or hub datasets through `datasets`.

A dataset is given as a :class:`bitbudget.specs.DatasetSpec` (from a config entry or a trace
key's `dataset` section, the schema's defaults filled). Every loader returns records
{question_id, problem, answer, choices, difficulty, choice_permutation}:

- ``answer`` is a canonical integer string for ``kind: integer`` (AIME: "70", never "070")
  and a letter A-D for ``kind: choice``.
- Multiple choice from GPQA-style columns (``fields.answer`` names the correct option's
  column, ``fields.incorrect`` the three wrong ones): the four options are shuffled per
  question with a permutation seeded by ``shuffle_seed`` and the question id, so the
  correct letter is uniform over A-D and the same on every machine. ``choice_permutation``
  records it: displayed option i is source option ``choice_permutation[i]`` (0 = correct,
  k = the k-th incorrect column). The problem text is ``problem_template`` filled with the
  question and the lettered options (default: the simple-evals / lighteval GPQA layout).
- Hub datasets (``source: hub``) go through ``datasets.load_dataset(path, name, split=...,
  revision=..., data_files=...)``; ``path: json`` or ``parquet`` with ``data_files`` loads a
  local copy through the same code. ``source: file`` reads a local parquet/JSONL file with
  pandas (no `datasets` cache needed on an offline cluster).

``questions_sha256`` is the content hash of the loaded questions (after shuffling), recorded
in every generation's metadata: for hub datasets it is only known once the data is loaded.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from bitbudget.specs import DatasetSpec
from bitbudget.tasks import make_synthetic_questions

LETTERS = "ABCD"
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


class DatasetError(ValueError):
    """The dataset's records do not match its config (fields, answers, size)."""


def load_questions(dataset: DatasetSpec) -> list[dict]:
    source = dataset.source
    if source == "synthetic":
        spec = dataset.synthetic
        questions = make_synthetic_questions(
            dataset.kind, spec["n_questions"], spec["seed"], spec["min_difficulty"], spec["max_difficulty"]
        )
        for question in questions:
            question["choice_permutation"] = None
    else:
        records = _read_file(Path(dataset.file)) if source == "file" else _read_hub(dataset.hub)
        questions = [_question(dataset, record, index) for index, record in enumerate(records)]
        _check_unique(questions)
    expected = dataset.expected_questions
    if expected is not None and len(questions) != expected:
        raise DatasetError(
            f"dataset has {len(questions)} questions but expected_questions is {expected}; "
            f"fix: check the hub name/split/revision or the file, or update expected_questions"
        )
    limit = dataset.max_questions
    return questions[:limit] if limit else questions


def questions_sha256(questions: list[dict]) -> str:
    """Content hash of a loaded question list (ids, texts, answers, options, permutations)."""
    canonical = json.dumps(questions, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dataset_summary(questions: list[dict]) -> dict:
    """What a generation's metadata records about its questions."""
    summary = {"sha256": questions_sha256(questions), "questions": len(questions)}
    permutations = {q["question_id"]: q["choice_permutation"] for q in questions if q.get("choice_permutation")}
    if permutations:
        summary["choice_permutations"] = permutations
    return summary


# --------------------------------------------------------------------------- readers
def _read_file(path: Path) -> list[dict]:
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist; fix the 'file' field of the dataset")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix in (".jsonl", ".json"):
        if not check_json_lines(path):
            return []
        frame = pd.read_json(path, lines=True, dtype=False)
    else:
        raise DatasetError(f"dataset file {path}: use a .parquet or .jsonl file")
    return frame.to_dict("records")


def check_json_lines(path: Path) -> int:
    """The number of records of a JSON-lines file, or DatasetError naming the first line that is
    not one JSON object (pandas would name neither the file nor the line)."""
    records = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"line {number} is not valid JSON ({error.msg}, column {error.colno}); "
                                   f"fix: one JSON object per line") from None
            if not isinstance(record, dict):
                raise DatasetError(f"line {number} holds a {type(record).__name__}, not a JSON object; "
                                   f"fix: one JSON object per line")
            records += 1
    return records


def load_hub_table(hub: dict):
    """One split of a hub dataset (or of local files through a `datasets` builder)."""
    import datasets

    return datasets.load_dataset(
        hub["path"], hub.get("name"), split=hub["split"], revision=hub.get("revision"),
        data_files=hub.get("data_files"),
    )


def _read_hub(hub: dict) -> list[dict]:
    return list(load_hub_table(hub))


# --------------------------------------------------------------------------- records
def _column(record: dict, column: str, dataset_field: str):
    if column not in record:
        raise DatasetError(
            f"dataset records have no column '{column}' (fields.{dataset_field}); "
            f"columns: {sorted(record)}; fix: set fields.{dataset_field} to one of them"
        )
    return record[column]


def _question(dataset: DatasetSpec, record: dict, index: int) -> dict:
    fields = dataset.fields
    raw_id = record.get(fields["question_id"])
    question_id = _SAFE_ID.sub("_", str(raw_id)) if raw_id not in (None, "") else f"q{index:04d}"
    text = str(_column(record, fields["problem"], "problem"))
    answer = _column(record, fields["answer"], "answer")
    difficulty = record.get(fields["difficulty"]) if "difficulty" in fields else None
    out = {"question_id": question_id, "problem": text, "answer": None, "choices": None,
           "difficulty": difficulty, "choice_permutation": None}
    if dataset.kind == "integer":
        out["answer"] = _integer_answer(answer, question_id)
        return out
    if "incorrect" in fields:
        options = [str(answer).strip()] + [str(_column(record, c, "incorrect")).strip() for c in fields["incorrect"]]
        if len(options) != len(LETTERS):
            raise DatasetError(f"fields.incorrect must name {len(LETTERS) - 1} columns, got {len(options) - 1}")
        permutation = choice_permutation(dataset.shuffle_seed, question_id, len(options))
        out["choices"] = [options[i] for i in permutation]
        out["answer"] = LETTERS[permutation.index(0)]
        out["choice_permutation"] = permutation
    else:  # options already lettered: one column per option, answer is a letter
        if "choices" not in fields:
            raise DatasetError("a choice dataset needs fields.incorrect (GPQA columns) or fields.choices")
        out["choices"] = [str(_column(record, c, "choices")).strip() for c in fields["choices"]]
        out["answer"] = str(answer).strip().upper()
        if out["answer"] not in LETTERS[: len(out["choices"])]:
            raise DatasetError(f"question {question_id}: answer '{answer}' is not among its options "
                               f"{LETTERS[: len(out['choices'])]}; fix: give the letter of one of its options")
    out["problem"] = dataset.problem_template.format(question=text.strip(), **dict(zip(LETTERS, out["choices"])))
    return out


def choice_permutation(seed: int, question_id: str, n: int = 4) -> list[int]:
    """Seeded per-question order of the options; index 0 is the correct one."""
    order = list(range(n))
    random.Random(f"choices/{seed}/{question_id}").shuffle(order)
    return order


def _integer_answer(answer, question_id: str) -> str:
    text = str(answer).strip()
    try:
        value = int(float(text)) if re.fullmatch(r"-?\d+(\.0+)?", text) else int(text)
    except ValueError:
        raise DatasetError(
            f"question {question_id}: answer '{answer}' is not an integer; fix: use kind 'choice' "
            f"or map fields.answer to the integer column"
        ) from None
    return str(value)


def _check_unique(questions: list[dict]) -> None:
    seen = set()
    for question in questions:
        if question["question_id"] in seen:
            raise DatasetError(
                f"question id '{question['question_id']}' repeats; fix: map fields.question_id to a "
                f"unique column (or remove it to number the rows)"
            )
        seen.add(question["question_id"])
