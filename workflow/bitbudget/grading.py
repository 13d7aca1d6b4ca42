"""Grade answers with math-verify: integer answers by equivalence, choice letters by its
string extraction.

Model output is untrusted. math-verify runs in worker processes (its own timeouts use
signals, which work in a worker's main thread). An answer is marked ``timed_out`` when a
parse or comparison hits math-verify's own timeout, or when a worker still overruns the
outer timeout (it is then killed with its pool); a timed-out answer grades as wrong.

Choice letters (A-D). The answer section is parsed once with LaTeX extraction (``\\boxed``
first) and math-verify's string extraction, anchored (``Answer: C``, ``Answer: **C**``,
``the answer is (B)``, ``Answer: C) 3.2 eV``). A parsed single-letter symbol (``\\boxed{C}``,
``\\boxed{\\text{C}}``, ``$C$``) is the letter; any other parse (``\\boxed{C) 3.2 eV}`` parses
as a product) falls back to the matched text, whose LaTeX wrappers are removed before the
string extraction reads it without anchor. A box naming more than one letter, or boxes
naming different letters (math-verify reads all boxes as one set), is ambiguous and gives
no answer.
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import re
import time

import pandas as pd

from bitbudget.specs import GradeSpec

log = logging.getLogger(__name__)

CHOICE_LETTERS = ("A", "B", "C", "D")
# how a letter may be written: C, (C), C)
CHOICE_FORMS = tuple(CHOICE_LETTERS) + tuple(f"({x})" for x in CHOICE_LETTERS) + tuple(f"{x})" for x in CHOICE_LETTERS)
# LaTeX wrappers around a boxed letter: \text{C}, \textbf{(C)}, \mathrm{C}, $...$
LATEX_WRAPPER = re.compile(r"\\[a-zA-Z]+\s*\{|[{}$]")
STANDALONE_LETTER = re.compile(r"(?<![A-Za-z\\])[A-D](?![A-Za-z])")


# (extracted, correct, timed_out) of an answer whose grading ran out of time
TIMED_OUT = (None, False, True)


def answer_section(text: str, end_of_thinking: str) -> str:
    """What follows the last end of thinking; graders never read the thinking itself."""
    _, found, after = text.rpartition(end_of_thinking)
    return after if found else ""


def _choice_extraction(anchored: bool):
    from math_verify import StringExtractionConfig

    return StringExtractionConfig(strings=CHOICE_FORMS, try_extract_without_anchor=not anchored, lowercase=False)


def _parse(text: str, extraction_config, seconds: int) -> list | None:
    """math-verify's parse; None when it hit its own timeout."""
    from math_verify import parse
    from math_verify.errors import TimeoutException

    started = time.monotonic()
    try:
        return parse(text, extraction_config=extraction_config, parsing_timeout=seconds, raise_on_error=True)
    except TimeoutException:
        return None
    except Exception as error:  # unparsable model output is no answer, not a crash
        if time.monotonic() - started >= seconds:
            # the timeout's signal landed inside the parser, which re-raised it as its own error
            return None
        log.debug("math-verify could not parse %r: %s", text, error)
        return []


def _letter_of_form(form: str) -> str | None:
    letter = form.strip("()")
    return letter if letter in CHOICE_LETTERS else None


def _letter_in_box(content: str, seconds: int) -> str | None:
    """The one letter a boxed (or otherwise matched) text names, if it names exactly one."""
    plain = LATEX_WRAPPER.sub(" ", content).strip()
    if len(set(STANDALONE_LETTER.findall(plain))) != 1:
        return None
    found = _parse(plain, [_choice_extraction(anchored=False)], seconds)
    return _letter_of_form(found[0]) if found else None


def extract_choice(answer: str, timeout_s: float = 5) -> tuple[str | None, bool]:
    """(letter or None, timed_out) for one answer section."""
    from math_verify import LatexExtractionConfig
    from sympy import Symbol

    seconds = max(1, int(timeout_s))
    parsed = _parse(answer, [LatexExtractionConfig(boxed_match_priority=0), _choice_extraction(anchored=True)],
                    seconds)
    if parsed is None:
        return None, True
    if not parsed:
        return None, False
    first, matched = parsed[0], parsed[-1]
    if isinstance(first, str) and _letter_of_form(first):
        return _letter_of_form(first), False
    if isinstance(first, Symbol) and first.name.upper() in CHOICE_LETTERS:
        return first.name.upper(), False
    return (_letter_in_box(matched, seconds) if isinstance(matched, str) else None), False


def grade_choice(answer: str, reference: str, timeout_s: float = 5) -> tuple[str | None, bool, bool]:
    """Runs inside a worker process: (extracted letter, correct, timed_out)."""
    letter, timed_out = extract_choice(answer, timeout_s)
    return letter, letter is not None and letter == reference.strip().upper(), timed_out


def grade_math(answer: str, reference: str, timeout_s: float) -> tuple[str | None, bool, bool]:
    """Runs inside a worker process: (extracted, correct, timed_out)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, verify
    from math_verify.errors import TimeoutException

    seconds = max(1, int(timeout_s))
    parsed = _parse(answer, [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()], seconds)
    if parsed is None:
        return TIMED_OUT
    if not parsed:
        return None, False, False
    extracted = str(parsed[-1]) if len(parsed) == 1 else str(parsed[0])
    gold = _parse(f"${reference}$", [LatexExtractionConfig(), ExprExtractionConfig()], seconds)
    if gold is None:
        return extracted, False, True
    # verify() is any() over (gold, parsed) pairs; compared pair by pair so that a pair
    # which hits the comparison timeout is told apart from a pair that differs
    timed_out = False
    for g in gold:
        for t in parsed:
            try:
                if verify(g, t, timeout_seconds=seconds, raise_on_error=True):
                    return extracted, True, False
            except TimeoutException:
                timed_out = True
            except Exception as error:
                log.debug("math-verify could not compare %r and %r: %s", g, t, error)
    return extracted, False, timed_out


def grade_parallel(grader, pairs: list[tuple[str, str]], timeout_s: float, workers: int) -> list[tuple]:
    """Grade (answer, reference) pairs with ``grader`` in worker processes; an overrun of
    the outer timeout kills the pool and grades as wrong and timed out."""
    results: list[tuple] = [None] * len(pairs)
    pending = list(range(len(pairs)))
    while pending:
        pool = futures.ProcessPoolExecutor(max_workers=workers)
        submitted = {i: pool.submit(grader, *pairs[i], timeout_s) for i in pending}
        pending = []
        for i, future in submitted.items():
            try:
                results[i] = tuple(future.result(timeout=timeout_s * 4 + 5))
            except futures.TimeoutError:
                log.warning("grading answer %d timed out; graded as wrong", i)
                results[i] = TIMED_OUT
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


GRADERS = {"choice": grade_choice, "integer": grade_math}


def grade_samples(samples: pd.DataFrame, kind: str, end_of_thinking: str, timeout_s: float, workers: int) -> pd.DataFrame:
    answers = [answer_section(text, end_of_thinking) for text in samples["text"]]
    references = [str(r) for r in samples["reference_answer"]]
    pairs = list(zip(answers, references))
    unique = list(dict.fromkeys(pairs))  # an answer repeated for the same reference is graded once
    by_pair = dict(zip(unique, grade_parallel(GRADERS[kind], unique, timeout_s, workers)))
    graded = [by_pair[pair] for pair in pairs]
    out = samples.copy()
    out["extracted_answer"] = [g[0] for g in graded]
    out["correct"] = [bool(g[1]) for g in graded]
    out["grading_timed_out"] = [bool(g[2]) for g in graded]
    return out


def grade(samples: pd.DataFrame, spec: GradeSpec) -> pd.DataFrame:
    """The grade stage: a generation's samples graded as its grade's spec says."""
    return grade_samples(samples, spec.kind, spec.end_of_thinking, spec.timeout_s, spec.runtime.workers)
