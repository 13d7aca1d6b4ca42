from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def random_tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny Qwen3 with the project's tokenizer: fast, deterministic, real HF files."""
    from bitbudget.tinymodels import train_tiny_model

    out = tmp_path_factory.mktemp("models") / "random-tiny"
    train_tiny_model(
        out, hidden_size=64, num_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=128, steps=1, batch_size=2, learning_rate=1e-4, seed=0,
        task={"kinds": ["integer"], "difficulty": {"integer": [2, 4]}, "truncated_fraction": 0.0},
        warmup_steps=1,
    )
    return out
