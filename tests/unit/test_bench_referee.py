"""bench/referee.py's truths: the noise-free majority vote and where a planted switch lies."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pandas as pd
import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("bench_referee", REPO / "bench" / "referee.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def brute_force_credit(probabilities: list[float], g: int) -> float:
    """Every sequence of g answers (value 0 right), tied leaders sharing the credit."""
    total = 0.0
    for votes in itertools.product(range(len(probabilities)), repeat=g):
        counts = [votes.count(v) for v in range(len(probabilities))]
        leaders = [v for v, c in enumerate(counts) if c == max(counts)]
        if 0 in leaders:
            total += math.prod(probabilities[v] for v in votes) / len(leaders)
    return total


@pytest.mark.parametrize("g", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("probabilities", [[0.3, 0.5, 0.1, 0.1], [0.6, 0.2, 0.2], [0.1, 0.9]])
def test_majority_credit_is_the_exact_vote_of_independent_answers(probabilities, g):
    expected = brute_force_credit(probabilities, g)
    assert bench.majority_credit(probabilities[0], probabilities[1:], g) == pytest.approx(expected, abs=1e-12)


def test_a_planted_switch_lies_between_the_analysis_sizes_of_its_neighbours():
    config = bench.surface_config("paper", 4.0, 0)
    parameters, formats = config["simulation"]["parameters"], config["weight_formats"]
    # analysis sizes deliberately unlike the simulator's: the interval must come from configurations
    scen = pd.DataFrame({"model": ["qwen3-1.7b", "qwen3-4b", "qwen3-4b"], "weights": ["bf16", "gptq8", "gptq4"],
                         "weight_gib": [30.0, 40.0, 20.0], "kv_method": "full", "G": 1})
    between = bench.planted_interval(4.0, scen, parameters, formats)  # 1.7B-16bit 3.17 < 4.0 < 4B-8bit 4.20
    assert between == (30.0, 40.0)
    on_grid = bench.SimulatedCheckpoint.from_format(parameters["qwen3-4b"], 8, 128).weight_gib
    assert bench.planted_interval(on_grid, scen, parameters, formats) == (40.0, 40.0)


def test_positions_cover_every_gap_between_adjacent_sizes():
    sizes = sorted({round(s, 6) for s, _, _ in bench.grid_sizes()})
    planted = bench.positions(None)
    for low, high in zip(sizes, sizes[1:]):
        assert any(low < p < high for p in planted), (low, high)
