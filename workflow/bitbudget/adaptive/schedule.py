"""The adaptive settings (`sampling.adaptive`), the rounds they run, and what a round concludes
for a generation."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptiveRule", "rounds", "DOMINATED", "FRONTIER", "MAXIMUM", "OPEN", "CURTAILED", "CONFIDENCE_RULE",
           "CURTAIL_RULE"]

#: reasons a generation stops (or goes on), as the plan and the report name them
DOMINATED, FRONTIER, MAXIMUM, OPEN = "dominated by a margin", "on the frontier, no competitor within reach", \
    "reached the maximum", "open"
CURTAILED = "the full design would decide the same"
#: the two stopping rules (`sampling.adaptive.rule`)
CONFIDENCE_RULE, CURTAIL_RULE = "confidence", "curtail"


@dataclass(frozen=True)
class AdaptiveRule:
    """The `sampling.adaptive` settings with the maximum they run up to (their defaults are the
    schema's, :func:`from_config`)."""

    initial: int
    step: int
    maximum: int
    confidence: float
    epsilon: float
    rule: str
    gamma: float
    predictive: str

    @classmethod
    def from_config(cls, sampling: dict, maximum: int | None = None) -> "AdaptiveRule | None":
        """None when adaptive sampling is off (no `sampling.adaptive`)."""
        adaptive = sampling.get("adaptive")
        if adaptive is None:
            return None
        return cls(int(adaptive["initial"]), int(adaptive["step"]),
                   int(maximum if maximum is not None else sampling["samples_per_question"]),
                   float(adaptive["confidence"]), float(adaptive["epsilon"]), str(adaptive["rule"]),
                   float(adaptive["curtail_gamma"]), str(adaptive["predictive"]))

    @property
    def rounds(self) -> list[int]:
        return rounds(self.initial, self.step, self.maximum)


def rounds(initial: int, step: int, maximum: int) -> list[int]:
    """Samples per question after each round: initial, initial + step, ..., maximum."""
    if initial < 1 or step < 1 or maximum < 1:
        raise ValueError(f"initial, step and maximum must be positive (got {initial}, {step}, {maximum})")
    out = list(range(min(initial, maximum), maximum, step))
    return out + [maximum]
