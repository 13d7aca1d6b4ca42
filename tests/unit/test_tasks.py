from bitbudget import tasks


def test_deterministic_and_fields():
    a = tasks.make_synthetic_questions("integer", 20, 7, 4, 50)
    b = tasks.make_synthetic_questions("integer", 20, 7, 4, 50)
    c = tasks.make_synthetic_questions("integer", 20, 8, 4, 50)
    assert a == b and a != c
    assert [q["question_id"] for q in a[:2]] == ["int-0000", "int-0001"]
    for q in a:
        assert set(q) == {"question_id", "problem", "answer", "choices", "difficulty"}
        assert q["choices"] is None and 4 <= q["difficulty"] <= 50
        assert str(int(q["answer"])) == q["answer"] and 0 <= int(q["answer"]) <= 99
    assert isinstance(tasks.SYNTHETIC_TASK_VERSION, str)


def test_choice_questions():
    qs = tasks.make_synthetic_questions("choice", 40, 1, 2, 25)
    assert {q["answer"] for q in qs} == set("ABCD")
    for q in qs:
        assert len(q["choices"]) == 4 and len(set(q["choices"])) == 4
        a, b, n, choices = tasks.parse_problem(q["problem"])
        assert choices == q["choices"] and n == q["difficulty"]
        last = tasks.reference_trace(q).strip().splitlines()[-1]
        assert last.split(":")[1][0] == q["choices"]["ABCD".index(q["answer"])]


def test_trace_length_grows_with_difficulty():
    qs = tasks.make_synthetic_questions("integer", 50, 3, 4, 60)
    for q in qs:
        assert tasks.trace_length_chars(q) == 1 + 5 * q["difficulty"]
    easy = tasks.make_synthetic_questions("choice", 1, 0, 2, 2)[0]
    hard = tasks.make_synthetic_questions("choice", 1, 0, 25, 25)[0]
    assert tasks.trace_length_chars(easy) < 25 <= 250 <= tasks.trace_length_chars(hard)


def test_reference_answer_is_consistent():
    q = {"problem": "Fibonacci mod 10, last two terms as a number. a=1 b=1 n=05", "answer": "83"}
    # 1 1 -> 2 3 5 8 3
    assert tasks.reference_trace(q) == "\n04:2\n03:3\n02:5\n01:8\n00:3\n"
    assert tasks.reference_completion(q).endswith("00:3\n</think>\n**Final Answer**\n\\boxed{83}")


def test_bad_arguments():
    import pytest

    with pytest.raises(ValueError, match="kind"):
        tasks.make_synthetic_questions("essay", 1, 0, 2, 3)
    with pytest.raises(ValueError, match="min_difficulty"):
        tasks.make_synthetic_questions("integer", 1, 0, 5, 3)
