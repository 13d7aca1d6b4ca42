"""Grading through math-verify: choice letters in the forms models write, integer answers,
and math-verify's own timeouts marked as timed out."""

import pandas as pd
import pytest

from bitbudget.grading import answer_section, extract_choice, grade_choice, grade_math, grade_samples

TIMEOUT_S = 2
# a sum of 1,500 terms to the 50th power: math-verify's parse takes ~5 s on an idle machine, well
# past the 1-2 s timeouts below (300 terms took ~1.2 s: a fast machine finished it in time)
SLOW_TO_PARSE = r"\boxed{(" + "+".join(f"x^{{{i}}}" for i in range(1500)) + r")^{50}}"
# a power tower: it parses, but comparing it with an integer runs out of time
SLOW_TO_COMPARE = r"\boxed{2^{2^{2^{2^{2^{2}}}}}}"


@pytest.mark.parametrize("answer, letter", [
    # boxed, with the LaTeX models put around the letter
    (r"The energy matches, so \boxed{C}", "C"),
    (r"so \boxed{\text{C}}", "C"),
    (r"\boxed{\textbf{(D)}}", "D"),
    (r"$\boxed{\mathrm{B}}$", "B"),
    (r"\boxed{(A)}", "A"),
    # boxed with the option's text after the letter
    (r"\boxed{C) 3.2 eV}", "C"),
    (r"\boxed{D) 3.2 eV \text{ (blue)}}", "D"),
    (r"\boxed{\text{(B) } 10^{-4}}", "B"),
    # anchored by the word answer
    ("Answer: C", "C"),
    ("Answer: **C**", "C"),
    ("**Final Answer**\nAnswer: C) 3.2 eV", "C"),
    ("**Final Answer**\nAnswer: **B**", "B"),
    ("The answer is (B).", "B"),
    ("Final answer: A", "A"),
    (r"Since $A$ is Hermitian, Answer: D", "D"),
    # inline math
    ("the answer is $C$", "C"),
    ("$C$", "C"),
    # the explicit answer wins over a later afterthought
    (r"\boxed{B}. Wait, maybe C", "B"),
    # no letter, or no single letter
    ("Answer: E", None),
    (r"\boxed{42}", None),
    (r"\boxed{A, C}", None),
    (r"\boxed{A} or \boxed{B}", None),
    (r"\boxed{\text{Both A and B}}", None),
    (r"\boxed{AB}", None),
    ("A particle decays into two photons.", None),
    ("", None),
])
def test_choice_letter_forms(answer, letter):
    assert extract_choice(answer, TIMEOUT_S) == (letter, False)


@pytest.mark.parametrize("answer, reference, correct", [
    (r"\boxed{\text{C}}", "C", True),
    (r"\boxed{\text{C}}", "D", False),
    ("Answer: **b**", "B", False),  # lower-case letters are not choices
    ("Answer: B", " b ", True),  # the reference is normalised
    (r"\boxed{A, C}", "A", False),
])
def test_grade_choice(answer, reference, correct):
    assert grade_choice(answer, reference, TIMEOUT_S)[1] is correct


@pytest.mark.parametrize("answer, reference, extracted, correct", [
    (r"So the total is \boxed{42}.", "42", "42", True),
    (r"\boxed{41}", "42", "41", False),
    (r"\boxed{\frac{84}{2}}", "42", "42", True),
    ("The answer is 42", "42", "42", True),
    ("no number at all", "42", None, False),
])
def test_grade_math(answer, reference, extracted, correct):
    assert grade_math(answer, reference, TIMEOUT_S) == (extracted, correct, False)


def test_math_verify_parse_timeout_is_marked():
    assert grade_math(SLOW_TO_PARSE, "42", 1) == (None, False, True)
    assert extract_choice(SLOW_TO_PARSE, 1) == (None, True)


def test_math_verify_comparison_timeout_is_marked():
    extracted, correct, timed_out = grade_math(SLOW_TO_COMPARE, "42", 1)
    assert extracted is not None and not correct and timed_out


def test_answer_section_reads_after_the_last_end_of_thinking():
    text = "<think>Answer: A ... </think> no, Answer: B</think>\n\\boxed{C}"
    assert answer_section(text, "</think>") == "\n\\boxed{C}"
    assert answer_section("<think>Answer: A, still thinking", "</think>") == ""


def test_grade_samples_in_workers_choice_and_integer():
    choice = pd.DataFrame({
        "text": ["<think>Answer: A</think>\\boxed{\\text{C}}", "<think>Answer: C", "</think>Answer: **D**",
                 "</think>" + SLOW_TO_PARSE],
        "reference_answer": ["C", "C", "C", "C"],
    })
    graded = grade_samples(choice, "choice", "</think>", timeout_s=1, workers=2)
    assert [x if isinstance(x, str) else None for x in graded["extracted_answer"]] == ["C", None, "D", None]
    assert list(graded["correct"]) == [True, False, False, False]
    assert list(graded["grading_timed_out"]) == [False, False, False, True]
    integer = pd.DataFrame({"text": ["</think>\\boxed{7}", "</think>\\boxed{8}"], "reference_answer": [7, 7]})
    graded = grade_samples(integer, "integer", "</think>", timeout_s=2, workers=1)
    assert list(graded["correct"]) == [True, False]
    assert list(graded["grading_timed_out"]) == [False, False]
