"""The adaptive settings (`sampling.adaptive`), the rounds they run, and what a round concludes
for a generation."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptiveRule", "rounds", "spending", "MAXIMUM", "OPEN", "CURTAILED", "ONE_ROUND", "CURTAIL_RULE"]

#: reasons a generation stops (or goes on), as the plan and the report name them
MAXIMUM, OPEN = "reached the maximum", "open"
CURTAILED = "the full design would decide the same"
ONE_ROUND = "drawn in one round (its grid has adaptive: false)"
#: the stopping rule (`sampling.adaptive.rule`; the confidence rule was removed, docs/adaptive.md)
CURTAIL_RULE = "curtail"


@dataclass(frozen=True)
class AdaptiveRule:
    """The `sampling.adaptive` settings with the maximum they run up to (their defaults are the
    schema's, :func:`from_config`)."""

    initial: int
    step: int
    maximum: int
    confidence: float
    rule: str
    gamma: float
    predictive: str
    close_questions: bool = False

    @classmethod
    def from_config(cls, sampling: dict, maximum: int | None = None) -> "AdaptiveRule | None":
        """None when adaptive sampling is off (no `sampling.adaptive`)."""
        adaptive = sampling.get("adaptive")
        if adaptive is None:
            return None
        return cls(int(adaptive["initial"]), int(adaptive["step"]),
                   int(maximum if maximum is not None else sampling["samples_per_question"]),
                   float(adaptive["confidence"]), str(adaptive["rule"]),
                   float(adaptive["curtail_gamma"]), str(adaptive["predictive"]), bool(adaptive["close_questions"]))

    @property
    def rounds(self) -> list[int]:
        return rounds(self.initial, self.step, self.maximum)

    @property
    def deciding_rounds(self) -> int:
        """Rounds after which budgets may close: every round but the last (it reaches the maximum)."""
        return len(self.rounds) - 1

    def round_gamma(self, round_index: int) -> float:
        """The error budget of the decision after round ``round_index`` (1 = the first round):
        its share of ``gamma`` by :func:`spending`; 0 for a round past the deciding ones."""
        shares = spending(self.gamma, self.deciding_rounds)
        return shares[round_index - 1] if 1 <= round_index <= len(shares) else 0.0


def rounds(initial: int, step: int, maximum: int) -> list[int]:
    """Samples per question after each round: initial, initial + step, ..., maximum."""
    if initial < 1 or step < 1 or maximum < 1:
        raise ValueError(f"initial, step and maximum must be positive (got {initial}, {step}, {maximum})")
    out = list(range(min(initial, maximum), maximum, step))
    return out + [maximum]


def spending(gamma: float, deciding: int) -> list[float]:
    """The error budget of each of ``deciding`` rounds, ``gamma`` split evenly: they sum to
    ``gamma``, so by the union bound the chance that any round's closings change a decision of
    the full design is at most ``gamma`` (docs/adaptive.md, "What it controls")."""
    return [gamma / deciding] * deciding if deciding else []
