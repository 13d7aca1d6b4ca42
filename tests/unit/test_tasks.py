from bitbudget import tasks


def test_deterministic_and_fields():
    a = tasks.make_synthetic_questions("integer", 20, 7, 4, 50)
    b = tasks.make_synthetic_questions("integer", 20, 7, 4, 50)
    c = tasks.make_synthetic_questions("integer", 20, 8, 4, 50)
    assert all(tasks.parse_problem(q["problem"])[2] == q["difficulty"] for q in a)
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
        assert last[0] == tasks.COUNTDOWN[0]
        assert last[1] == q["choices"]["ABCD".index(q["answer"])]
        assert last[2:] == "".join(q["choices"])  # options repeated on every line


def test_trace_length_grows_with_difficulty():
    qs = tasks.make_synthetic_questions("integer", 50, 3, 4, 51)
    for q in qs:  # two seed lines, then one 2-character line per step
        assert tasks.trace_length_chars(q) == 1 + 3 * (q["difficulty"] + 2)
    easy = tasks.make_synthetic_questions("choice", 1, 0, 2, 2)[0]
    hard = tasks.make_synthetic_questions("choice", 1, 0, 16, 16)[0]
    assert tasks.trace_length_chars(easy) < 32 <= 120 <= tasks.trace_length_chars(hard)


def test_reference_answer_is_consistent():
    q = {"problem": "Fibonacci mod 10: the last two terms. seeds=11 steps=f", "answer": "83", "choices": None}
    # 1 1 -> 2 3 5 8 3, countdown f (5) .. a (0)
    assert tasks.reference_trace(q) == "\n#1\nf1\ne2\nd3\nc5\nb8\na3\n"
    assert tasks.reference_completion(q).endswith("a3\n</think>\n**Final Answer**\n\\boxed{83}")
    q_small = {"problem": "Fibonacci mod 10: the last two terms. seeds=50 steps=c", "answer": "5", "choices": None}
    # 5 0 -> 5 5 0: the box holds both digits, "05"
    assert tasks.reference_completion(q_small).endswith("\\boxed{05}")


def test_bad_arguments():
    import pytest

    with pytest.raises(ValueError, match="kind"):
        tasks.make_synthetic_questions("essay", 1, 0, 2, 3)
    with pytest.raises(ValueError, match="min_difficulty"):
        tasks.make_synthetic_questions("integer", 1, 0, 5, 3)
