"""Grade answers: math-verify for integer answers, letter extraction for multiple choice.

Model output is untrusted. math-verify runs in worker processes (its own timeouts use
signals, which work in a worker's main thread); a worker that still overruns the outer
timeout is killed with its pool, and the answer grades as wrong with `timed_out` set.
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import re

import pandas as pd

log = logging.getLogger(__name__)

CHOICE_PATTERNS = (
    re.compile(r"\\boxed\{\s*\(?([A-D])\)?\s*\}"),
    re.compile(r"[Aa]nswer(?: is)?\s*:?\s*\(?([A-D])\)?\b"),
)


def answer_section(text: str, end_of_thinking: str) -> str:
    """What follows the last end of thinking; graders never read the thinking itself."""
    _, found, after = text.rpartition(end_of_thinking)
    return after if found else ""


def extract_choice(answer: str) -> str | None:
    for pattern in CHOICE_PATTERNS:
        matches = pattern.findall(answer)
        if matches:
            return matches[-1].upper()
    return None


def grade_choice(answer: str, reference: str) -> tuple[str | None, bool]:
    letter = extract_choice(answer)
    return letter, letter is not None and letter == reference.strip().upper()


def grade_math(answer: str, reference: str, timeout_s: float) -> tuple[str | None, bool]:
    """Runs inside a worker process."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    seconds = max(1, int(timeout_s))
    parsed = parse(
        answer, extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
        parsing_timeout=seconds,
    )
    if not parsed:
        return None, False
    gold = parse(f"${reference}$", parsing_timeout=seconds)
    return str(parsed[-1]) if len(parsed) == 1 else str(parsed[0]), bool(verify(gold, parsed, timeout_seconds=seconds))


def _grade_math_many(batch: list[tuple[str, str]], timeout_s: float) -> list[tuple[str | None, bool]]:
    return [grade_math(answer, reference, timeout_s) for answer, reference in batch]


def grade_math_parallel(pairs: list[tuple[str, str]], timeout_s: float, workers: int) -> list[tuple]:
    """Grade (answer, reference) pairs in worker processes; an overrun grades as wrong."""
    results: list[tuple] = [None] * len(pairs)
    pending = list(range(len(pairs)))
    while pending:
        pool = futures.ProcessPoolExecutor(max_workers=workers)
        submitted = {i: pool.submit(grade_math, *pairs[i], timeout_s) for i in pending}
        pending = []
        for i, future in submitted.items():
            try:
                extracted, correct = future.result(timeout=timeout_s * 4 + 5)
                results[i] = (extracted, correct, False)
            except futures.TimeoutError:
                log.warning("grading answer %d timed out; graded as wrong", i)
                results[i] = (None, False, True)
                pending = [j for j in submitted if j > i and results[j] is None]
                _kill(pool)
                break
            except Exception as error:  # a crash on one answer must not sink the others
                log.warning("grading answer %d failed (%s); graded as wrong", i, error)
                results[i] = (None, False, False)
        else:
            pool.shutdown()
    return results


def _kill(pool: futures.ProcessPoolExecutor) -> None:
    for process in list(pool._processes.values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def grade_samples(samples: pd.DataFrame, kind: str, end_of_thinking: str, timeout_s: float, workers: int) -> pd.DataFrame:
    answers = [answer_section(text, end_of_thinking) for text in samples["text"]]
    references = list(samples["reference_answer"])
    if kind == "choice":
        graded = [(*grade_choice(a, r), False) for a, r in zip(answers, references)]
    else:
        graded = grade_math_parallel(list(zip(answers, references)), timeout_s, workers)
    out = samples.copy()
    out["extracted_answer"] = [g[0] for g in graded]
    out["correct"] = [bool(g[1]) for g in graded]
    out["grading_timed_out"] = [bool(g[2]) for g in graded]
    return out
