"""Synthetic reasoning tasks with verifiable answers (the CPU default of the study).

The task is a digit recurrence, Fibonacci modulo 10: from seed digits ``a, b`` write ``n``
terms ``x_k = (x_{k-1} + x_{k-2}) mod 10``. Difficulty is ``n``; the trace writes one line per
step, so its length grows linearly with it.

Every token of the trace is a function of tokens a fixed distance back (tiny transformers learn
such tasks quickly and fail at lookups at a variable distance):

* ``n`` is written as one countdown symbol (``COUNTDOWN[n]``); a trace line is ``CD`` (+ the
  options for kind ``choice``): ``C`` the previous line's symbol minus one, ``D`` the sum mod 10
  of the digits one and two lines up. The thinking ends after the line whose symbol is
  ``COUNTDOWN[0]``.
* The first two lines copy the seeds (and ``n``) from the end of the prompt, whose layout is
  fixed per kind: ``#a`` then ``Kb`` with ``K = COUNTDOWN[n]``.
* kind ``"integer"`` (AIME-like): the answer is the number formed by the last two terms
  (0-99); the model writes both digits.
* kind ``"choice"`` (GPQA-like): four distinct candidate digits for the last term, letters
  A-D; every line repeats the options, so matching the last term to its letter reads tokens at
  a fixed distance.

A full assistant turn is ``<think>\\n`` + trace + ``</think>`` + ``\\n**Final Answer**\\n\\boxed{X}``
+ ``<|im_end|>``, matching s1-style budget forcing with the suffix
``</think>\\n**Final Answer**\\n\\boxed{``.
"""

from __future__ import annotations

import random

from bitbudget.versions import SYNTHETIC_TASK_VERSION

KINDS = ("integer", "choice")
LETTERS = "ABCD"
COUNTDOWN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_DIFFICULTY = len(COUNTDOWN) - 1
SEED_MARK = "#"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_PREFIX = "\n**Final Answer**\n\\boxed{"
FORCED_SUFFIX = THINK_CLOSE + ANSWER_PREFIX

# the fields the first trace line reads sit at the end of the problem, close to the trace
_INTEGER_PROBLEM = "Fibonacci mod 10: the last two terms. seeds={a}{b} steps={k}"
_CHOICE_PROBLEM = "Fibonacci mod 10: which option is the last term? seeds={a}{b} steps={k} ABCD={o[0]}{o[1]}{o[2]}{o[3]}"


def _terms(a: int, b: int, n: int) -> list[int]:
    seq = [a, b]
    for _ in range(n):
        seq.append((seq[-1] + seq[-2]) % 10)
    return seq[2:]


def _check(kind: str, min_difficulty: int, max_difficulty: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 2 <= min_difficulty <= max_difficulty <= MAX_DIFFICULTY:
        raise ValueError(
            "min_difficulty/max_difficulty must satisfy 2 <= min_difficulty <= max_difficulty "
            f"<= {MAX_DIFFICULTY}, got {min_difficulty}, {max_difficulty}"
        )


def _question(kind: str, index: int, rng: random.Random, n: int) -> dict:
    a, b = rng.randrange(10), rng.randrange(10)
    terms = _terms(a, b, n)
    if kind == "integer":
        answer = str(10 * terms[-2] + terms[-1])
        problem = _INTEGER_PROBLEM.format(a=a, b=b, k=COUNTDOWN[n])
        choices = None
        prefix = "int"
    else:
        others = rng.sample([d for d in range(10) if d != terms[-1]], 3)
        pos = rng.randrange(4)
        options = others[:pos] + [terms[-1]] + others[pos:]
        choices = [str(o) for o in options]
        answer = LETTERS[pos]
        problem = _CHOICE_PROBLEM.format(a=a, b=b, k=COUNTDOWN[n], o=options)
        prefix = "mc"
    return {
        "question_id": f"{prefix}-{index:04d}",
        "problem": problem,
        "answer": answer,
        "choices": choices,
        "difficulty": n,
    }


def make_synthetic_questions(
    kind: str, n_questions: int, seed: int, min_difficulty: int, max_difficulty: int
) -> list[dict]:
    """Deterministic list of questions; difficulty (steps) uniform in [min, max].

    Each dict: question_id, problem, answer, choices (None for "integer"), difficulty.
    """
    _check(kind, min_difficulty, max_difficulty)
    rng = random.Random(f"{SYNTHETIC_TASK_VERSION}/{kind}/{seed}")
    out = []
    for i in range(n_questions):
        n = rng.randint(min_difficulty, max_difficulty)
        out.append(_question(kind, i, rng, n))
    return out


def parse_problem(problem: str) -> tuple[int, int, int, list[str] | None]:
    """Recover (a, b, n, choices) from a problem text written by this module."""
    fields = dict(f.split("=") for f in problem.split() if "=" in f)
    choices = list(fields["ABCD"]) if "ABCD" in fields else None
    seeds = fields["seeds"]
    return int(seeds[0]), int(seeds[1]), COUNTDOWN.index(fields["steps"]), choices


def reference_trace(question: dict) -> str:
    """The thinking text between ``<think>`` and ``</think>`` (starts and ends with a newline)."""
    a, b, n, choices = parse_problem(question["problem"])
    options = "".join(choices) if choices is not None else ""
    lines = [SEED_MARK + str(a), COUNTDOWN[n] + str(b)]
    lines += [COUNTDOWN[n - 1 - k] + str(t) for k, t in enumerate(_terms(a, b, n))]
    return "\n" + "\n".join(line + options for line in lines) + "\n"


def answer_text(question: dict) -> str:
    """What the model writes inside the box: two digits for integers, a letter for choices."""
    return question["answer"].zfill(2) if question["choices"] is None else question["answer"]


def reference_completion(question: dict) -> str:
    """The full assistant turn after the generation prompt (which ends with ``<think>\\n``)."""
    return reference_trace(question)[1:] + FORCED_SUFFIX + answer_text(question) + "}"


def trace_length_chars(question: dict) -> int:
    return len(reference_trace(question))


def copied_prefix_length(trace: str) -> int:
    """Characters of the trace's first two lines: the ones copied from the prompt."""
    first = trace.find("\n")
    second = trace.find("\n", first + 1) if first >= 0 else -1
    return len(trace) if second < 0 else second
