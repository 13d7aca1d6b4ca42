"""Dataset loaders on small fixtures in the hub datasets' column schema (no network)."""

from __future__ import annotations

import copy
import json
import socket
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bitbudget.datasets import (
    LETTERS,
    DatasetError,
    choice_permutation,
    dataset_summary,
    load_questions,
    questions_sha256,
)
from bitbudget.specs import DatasetSpec

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


def paper_dataset(name: str, **route) -> dict:
    """The paper config's dataset, its hub route replaced (file, or a local `datasets` builder)."""
    dataset = copy.deepcopy(PAPER["datasets"][name])
    dataset.pop("expected_questions")
    dataset.update(route)
    return dataset


def load(dataset: dict) -> list[dict]:
    """The questions of a dataset entry given directly (the schema's defaults filled)."""
    return load_questions(DatasetSpec.from_config(dataset))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------------- AIME
def test_aime_file_route_gives_integer_answers(no_network):
    questions = load(paper_dataset("aime2025", source="file", file=str(FIXTURES / "aime2025.jsonl")))
    assert [q["question_id"] for q in questions] == ["0", "1", "2"]
    assert [q["answer"] for q in questions] == ["70", "38", "11"]  # "070" canonicalised
    assert questions[0]["problem"].startswith("Compute $7")
    assert all(q["choices"] is None for q in questions)


def test_aime_through_the_datasets_library(no_network):
    """`source: hub` runs datasets.load_dataset; the json builder reads the local fixture."""
    hub = {"path": "json", "name": None, "split": "train", "data_files": str(FIXTURES / "aime2025.jsonl")}
    via_datasets = load(paper_dataset("aime2025", hub=hub))
    via_file = load(paper_dataset("aime2025", source="file", file=str(FIXTURES / "aime2025.jsonl")))
    assert via_datasets == via_file
    assert questions_sha256(via_datasets) == questions_sha256(via_file)


def test_expected_questions_catches_a_wrong_split():
    dataset = paper_dataset("aime2025", source="file", file=str(FIXTURES / "aime2025.jsonl"), expected_questions=30)
    with pytest.raises(DatasetError, match="expected_questions is 30"):
        load(dataset)
    dataset["expected_questions"] = 3
    dataset["max_questions"] = 2
    assert len(load(dataset)) == 2


def test_non_integer_answer_is_an_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "p", "answer": "\\\\frac{1}{2}", "id": "x"}\n')
    with pytest.raises(DatasetError, match="not an integer"):
        load(paper_dataset("aime2025", source="file", file=str(path)))


def test_missing_column_names_the_field():
    dataset = paper_dataset("aime2025", source="file", file=str(FIXTURES / "aime2025.jsonl"))
    dataset["fields"] = {**dataset["fields"], "problem": "question"}
    with pytest.raises(DatasetError, match="fields.problem"):
        load(dataset)


# --------------------------------------------------------------------------- GPQA
@pytest.fixture(params=["file-parquet", "file-jsonl", "datasets-parquet"])
def gpqa(request, no_network):
    if request.param == "file-parquet":
        return paper_dataset("gpqa_diamond", source="file", file=str(FIXTURES / "gpqa_diamond.parquet"))
    if request.param == "file-jsonl":
        return paper_dataset("gpqa_diamond", source="file", file=str(FIXTURES / "gpqa_diamond.jsonl"))
    hub = {"path": "parquet", "split": "train", "data_files": [str(FIXTURES / "gpqa_diamond.parquet")]}
    return paper_dataset("gpqa_diamond", hub=hub)


def test_gpqa_choices_are_shuffled_with_a_recorded_permutation(gpqa):
    import pandas as pd

    source = pd.read_parquet(FIXTURES / "gpqa_diamond.parquet").set_index("Record ID")
    questions = load(gpqa)
    assert [q["question_id"] for q in questions] == ["recA1", "recB2", "recC3", "recD4"]
    for q in questions:
        row = source.loc[q["question_id"]]
        options = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
        assert q["choices"] == [options[i] for i in q["choice_permutation"]]
        assert q["choices"][LETTERS.index(q["answer"])] == row["Correct Answer"]
        assert sorted(q["choice_permutation"]) == [0, 1, 2, 3]
        # the simple-evals layout from problem_template, the question first
        assert q["problem"].startswith(row["Question"] + "\n\nA) ")
        for letter, option in zip(LETTERS, q["choices"]):
            assert f"\n{letter}) {option}" in q["problem"]


def test_gpqa_permutation_is_seeded(gpqa):
    first = load(gpqa)
    assert load(gpqa) == first  # same seed, same order on every load
    other = load({**gpqa, "shuffle_seed": 1})
    assert [q["choice_permutation"] for q in other] != [q["choice_permutation"] for q in first]
    assert questions_sha256(other) != questions_sha256(first)


def test_correct_letter_is_uniform_over_questions():
    positions = Counter(choice_permutation(0, f"rec{i}").index(0) for i in range(4000))
    assert set(positions) == {0, 1, 2, 3}
    assert all(900 < n < 1100 for n in positions.values())


def test_prompt_template_from_config_formats_the_problem(gpqa):
    question = load(gpqa)[0]
    prompt = PAPER["prompts"]["choice"].format(problem=question["problem"])
    assert prompt.startswith("Answer the following multiple choice question.")
    assert "'Answer: $LETTER'" in prompt and prompt.endswith(f"D) {question['choices'][3]}")


def test_summary_records_hash_and_permutations(gpqa):
    questions = load(gpqa)
    summary = dataset_summary(questions)
    assert summary["sha256"] == questions_sha256(questions) and summary["questions"] == 4
    assert summary["choice_permutations"]["recA1"] == questions[0]["choice_permutation"]
    synthetic = load({"kind": "choice", "source": "synthetic",
                                "synthetic": {"n_questions": 3, "seed": 1, "min_difficulty": 2, "max_difficulty": 4}})
    assert "choice_permutations" not in dataset_summary(synthetic)


def test_lettered_choice_columns(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text('{"q": "Pick one", "a": "x", "b": "y", "c": "z", "d": "w", "label": "c", "qid": "m1"}\n')
    dataset = {"kind": "choice", "source": "file", "file": str(path),
               "fields": {"question_id": "qid", "problem": "q", "answer": "label", "choices": ["a", "b", "c", "d"]}}
    [question] = load(dataset)
    assert question["answer"] == "C" and question["choices"] == ["x", "y", "z", "w"]
    assert question["choice_permutation"] is None


# --------------------------------------------------------------------------- parse time
def test_paper_study_keys_hub_datasets_without_loading_them(no_network):
    """Planning the paper grid reads no dataset and no model: hub keys are path/name/split/revision."""
    from bitbudget.preflight import load_study_config
    from bitbudget.study import build_study, dataset_key

    config = load_study_config(REPO / "config" / "paper.yaml")
    study = build_study(config)
    key = dataset_key("gpqa_diamond", config["datasets"]["gpqa_diamond"])
    assert key["hub"] == {"path": "Idavidrein/gpqa", "name": "gpqa_diamond", "split": "train", "revision": None}
    assert "file_sha256" not in key
    revised = copy.deepcopy(config)
    revised["datasets"]["gpqa_diamond"]["hub"]["revision"] = "abc123"
    changed = {g.gen_id for g in build_study(revised).generations.values()} - set(study.generations)
    assert changed and all(build_study(revised).generations[g].dataset == "gpqa_diamond" for g in changed)


def config_with_file_datasets(**datasets) -> dict:
    """The default study with its datasets replaced by local files (name -> dataset)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"] = datasets
    for grid in config["grids"].values():
        grid["datasets"] = list(datasets)
    return config


def test_a_malformed_jsonl_line_stops_planning_naming_field_file_and_line(tmp_path):
    from bitbudget.errors import ConfigError
    from tests.harness import plan_as_the_snakefile

    path = tmp_path / "aime.jsonl"
    lines = (FIXTURES / "aime2025.jsonl").read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1][:-5], *lines[2:]]) + "\n")
    config = config_with_file_datasets(aime={"kind": "integer", "source": "file", "file": str(path),
                                             "fields": PAPER["datasets"]["aime2025"]["fields"]})
    with pytest.raises(ConfigError) as error:
        plan_as_the_snakefile(config)
    message = str(error.value)
    assert "'datasets.aime.file'" in message and str(path) in message and "line 2 " in message
    path.write_text("\n".join(lines) + "\n")  # repaired, it plans
    assert plan_as_the_snakefile(config).generations


def test_an_answer_outside_the_options_stops_planning_naming_field_file_and_question(tmp_path):
    from bitbudget.errors import ConfigError
    from tests.harness import plan_as_the_snakefile

    path = tmp_path / "mc.jsonl"
    record = {"q": "Pick one", "a": "x", "b": "y", "c": "z", "d": "w"}
    path.write_text(json.dumps({**record, "label": "B", "qid": "c1"}) + "\n"
                    + json.dumps({**record, "label": "E", "qid": "c2"}) + "\n")
    fields = {"question_id": "qid", "problem": "q", "answer": "label", "choices": ["a", "b", "c", "d"]}
    config = config_with_file_datasets(mc={"kind": "choice", "source": "file", "file": str(path), "fields": fields})
    with pytest.raises(ConfigError) as error:
        plan_as_the_snakefile(config)
    message = str(error.value)
    assert "'datasets.mc.file'" in message and str(path) in message and "question c2" in message
    assert "'E'" in message and "ABCD" in message


def test_a_jsonl_line_that_is_no_object_is_named(tmp_path):
    from bitbudget.datasets import check_json_lines

    path = tmp_path / "list.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n\n[1, 2]\n')
    with pytest.raises(DatasetError, match="line 3 holds a list"):
        check_json_lines(path)
    path.write_text('{"problem": "1+1", "answer": "2"}\n\n')
    assert check_json_lines(path) == 1


def test_a_default_written_out_and_one_left_out_give_one_id(tmp_path):
    """The dataset defaults live in the schema: writing them out moves no id."""
    from bitbudget.schema import schema_defaults
    from tests.harness import plan_as_the_snakefile

    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"problem": "Pick one", "answer": "x", "w1": "y", "w2": "z", "w3": "w"}) + "\n")
    left_out = {"kind": "choice", "source": "file", "file": str(path), "fields": {"incorrect": ["w1", "w2", "w3"]}}
    written = {**left_out, "shuffle_seed": 0, "max_questions": None,
               "problem_template": schema_defaults("datasets", "*")["problem_template"],
               "fields": {**left_out["fields"], "question_id": "question_id", "problem": "problem", "answer": "answer"}}
    ids = [sorted(plan_as_the_snakefile(config_with_file_datasets(mc=dataset)).generations)
           for dataset in (left_out, written)]
    assert ids[0] == ids[1]
    other_seed = sorted(plan_as_the_snakefile(config_with_file_datasets(mc={**left_out, "shuffle_seed": 1})).generations)
    assert other_seed != ids[0]


def test_the_loader_fills_the_schema_defaults_as_validation_does():
    from bitbudget.specs import with_defaults
    from bitbudget.preflight import validate_study_config

    config = validate_study_config(config_with_file_datasets(
        aime={"kind": "integer", "source": "file", "file": str(FIXTURES / "aime2025.jsonl")}))
    raw = {"kind": "integer", "source": "file", "file": str(FIXTURES / "aime2025.jsonl")}
    assert with_defaults(raw) == config["datasets"]["aime"]
