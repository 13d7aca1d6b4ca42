"""History-free draws: a token's noise is fixed by (sample, stream, position) and nothing else."""

from __future__ import annotations

import torch

from bitbudget.backends import draws, sampler

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])
ROWS = 20000
TOLERANCE = 0.015  # about 5 standard errors of a frequency near 0.5 over ROWS draws


def frequencies(tokens: torch.Tensor) -> torch.Tensor:
    return torch.bincount(tokens, minlength=len(PROBS)).double() / len(tokens)


def test_draw_keys_name_the_sample_and_its_stream_only():
    key = draws.draw_key(0, "trace", "q1", 2, draws.THINK)
    assert key == draws.draw_key(0, "trace", "q1", 2, draws.THINK) < 2**draws.KEY_BITS
    others = {draws.draw_key(0, "trace", "q1", 3, draws.THINK), draws.draw_key(0, "trace", "q2", 2, draws.THINK),
              draws.draw_key(1, "trace", "q1", 2, draws.THINK), draws.draw_key(0, "other", "q1", 2, draws.THINK),
              draws.draw_key(0, "trace", "q1", 2, draws.NATURAL), draws.draw_key(0, "trace", "q1", 2, draws.fork_stream(8))}
    assert key not in others and len(others) == 6


def test_mix32_is_the_32_bit_hash_it_names():
    def reference(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    values = torch.tensor([0, 1, 12345, 2**31, 2**32 - 1], dtype=torch.long)
    assert sampler.mix32(values).tolist() == [reference(int(v)) for v in values]


def test_a_rows_draw_depends_on_its_logits_key_and_position_only():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    keys = torch.tensor([draws.draw_key(0, "t", "q", i, draws.THINK) for i in range(6)])
    positions = torch.tensor([5, 5, 9, 9, 30, 31])
    together = sampler.draw(logits, keys, positions, 0.8, 20, 0.95)
    alone = [int(sampler.draw(logits[i:i + 1], keys[i:i + 1], positions[i:i + 1], 0.8, 20, 0.95)) for i in range(6)]
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = sampler.draw(logits[order], keys[order], positions[order], 0.8, 20, 0.95)
    assert together.tolist() == alone and shuffled.tolist() == together[order].tolist()
    assert torch.equal(sampler.draw(logits, None, None, 0.0, 20, 0.95), logits.argmax(dim=-1))


def test_draws_follow_temperature_top_k_and_top_p():
    logits = PROBS.log().expand(ROWS, -1)
    keys = torch.arange(ROWS, dtype=torch.long) * 7919 + 11
    at = torch.full((ROWS,), 17, dtype=torch.long)
    tempered = torch.softmax(PROBS.log() / 0.5, dim=-1).double()
    cases = [((1.0, 0, 1.0), PROBS.double()), ((0.5, 0, 1.0), tempered),
             ((1.0, 2, 1.0), torch.tensor([0.625, 0.375, 0, 0], dtype=torch.double)),
             ((1.0, 0, 0.7), torch.tensor([0.625, 0.375, 0, 0], dtype=torch.double))]
    for settings, expected in cases:
        assert torch.allclose(frequencies(sampler.draw(logits, keys, at, *settings)), expected, atol=TOLERANCE), settings
    # one key along its positions is a sequence of independent draws too
    along = sampler.draw(logits, torch.full((ROWS,), 99, dtype=torch.long), torch.arange(ROWS), 1.0, 0, 1.0)
    assert torch.allclose(frequencies(along), PROBS.double(), atol=TOLERANCE)
    following = sampler.draw(logits, keys, at + 1, 1.0, 0, 1.0)
    first = sampler.draw(logits, keys, at, 1.0, 0, 1.0)
    assert abs(((first == 0) & (following == 0)).double().mean() - 0.25) < TOLERANCE
