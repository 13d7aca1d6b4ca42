"""Memory model: the paper's Table 1 and the bytes really held by each KV cache."""

import numpy as np
import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from bitbudget.kv import make_cache, measure_cache_bytes, prepare_model
from bitbudget.memory import (
    GIB,
    KIB,
    PAPER_KV_KIB_PER_TOKEN,
    PAPER_WEIGHT_GIB,
    architecture_path,
    checkpoint_storage,
    format_table,
    kv_bytes,
    kv_charged_tokens,
    load_architecture,
    param_counts,
    total_bytes,
    weight_bytes,
    weight_bytes_from_counts,
    weight_table,
)


@pytest.mark.parametrize("size", sorted(PAPER_WEIGHT_GIB))
def test_weights_match_paper_table(size):
    cfg = load_architecture(architecture_path(size))
    for bits, ref in zip((4, 8, 16), PAPER_WEIGHT_GIB[size]):
        if ref is None:
            continue
        ours = weight_bytes(cfg, bits, group_size=128) / GIB
        assert abs(ours - ref) / ref < 0.01, (size, bits, ours, ref)


@pytest.mark.parametrize("size", sorted(PAPER_KV_KIB_PER_TOKEN))
def test_kv_per_token_matches_paper(size):
    cfg = architecture_path(size)
    assert kv_bytes(cfg, {"method": "full"}, 1) / KIB == PAPER_KV_KIB_PER_TOKEN[size]


def test_param_counts_qwen3_known_totals():
    # published totals: 0.6B = 0.596B (tied), 8B = 8.19B (untied)
    assert param_counts(architecture_path("0.6b"))["total"] == pytest.approx(596e6, rel=0.01)
    assert param_counts(architecture_path("8b"))["total"] == pytest.approx(8.19e9, rel=0.01)


def test_weight_formula_and_table():
    assert weight_bytes_from_counts(1280, 10, 16) == 2 * 1290
    assert weight_bytes_from_counts(1280, 10, 4, 128) == 1280 / 2 + 10 * (16 + 4) / 8 + 20  # zeros at 4 bits
    assert weight_bytes_from_counts(1280, 10, 4, 128, zero_bits=16) == 1280 / 2 + 10 * 4 + 20
    rows = weight_table()
    assert [r["size"] for r in rows] == ["0.6b", "1.7b", "4b", "8b", "14b", "32b"]
    assert "Qwen3-32B" in format_table(rows)


def test_kv_caps_and_total():
    cfg = architecture_path("8b")
    per_tok = 144 * KIB
    streaming = {"method": "streaming_llm", "budget": 2048, "sink_tokens": 4}
    rkv = {"method": "r_kv", "budget": 2048, "compress_every": 128}
    # the paper's convention: both eviction methods are charged their KV budget
    assert kv_bytes(cfg, streaming, 30000) == 2048 * per_tok
    assert kv_bytes(cfg, rkv, 30000) == 2048 * per_tok
    # full context: both charged what they hold between forwards at its fullest
    assert kv_bytes(cfg, streaming, 30000, kv_tokens="context") == 2048 * per_tok
    assert kv_bytes(cfg, rkv, 30000, kv_tokens="context") == 2176 * per_tok
    assert kv_bytes(cfg, rkv, 100) == 100 * per_tok
    q = kv_bytes(cfg, {"method": "quantized", "bits": 4, "group_size": 64, "residual_length": 128}, 10128)
    assert q == pytest.approx((72 * KIB * 2) * (10000 * (0.5 + 4 / 64) + 128 * 2) / 2, rel=1e-9)
    tot = total_bytes(cfg, 8, {"method": "full"}, 900, samples=4)
    assert tot == pytest.approx(weight_bytes(cfg, 8) + 4 * 900 * per_tok)
    tot = total_bytes(cfg, 8, {"method": "full"}, 900, samples=4, kv_tokens="context",
                      prompt_tokens=100, answer_tokens=24)
    assert tot == pytest.approx(weight_bytes(cfg, 8) + 4 * 1024 * per_tok)
    assert kv_charged_tokens("budget", np.array([10, 20]), 5, 3).tolist() == [10, 20]
    assert kv_charged_tokens("context", np.array([10, 20]), 5, 3).tolist() == [18, 28]
    with pytest.raises(ValueError, match="kv_tokens"):
        kv_charged_tokens("prompt", 10)


STRATEGIES = {
    "full": {"method": "full"},
    "quantized8": {"method": "quantized", "backend": "hqq", "bits": 8, "group_size": 64, "residual_length": 32},
    "quantized4": {"method": "quantized", "backend": "hqq", "bits": 4, "group_size": 64, "residual_length": 32},
    "quantized2": {"method": "quantized", "backend": "hqq", "bits": 2, "group_size": 64, "residual_length": 32},
    "streaming_llm": {"method": "streaming_llm", "budget": 48, "sink_tokens": 4},
    "r_kv": {"method": "r_kv", "budget": 48, "observation_window": 8, "pool_kernel": 7, "lam": 0.1,
             "compress_every": 16},
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=100, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("name", list(STRATEGIES))
@torch.no_grad()
def test_formula_matches_measured_cache_bytes(model, name):
    """Measured at each strategy's peak between forwards: the quantized residual one token short
    of a flush (the formula charges it full), R-KV one token short of a compression."""
    strategy = STRATEGIES[name]
    batch, prompt_len = 2, 16
    steps = {"full": 80, "streaming_llm": 80, "r_kv": 95}.get(name, 31)  # 16 quantized + 31 residual
    ids = torch.randint(0, 100, (batch, prompt_len), generator=torch.Generator().manual_seed(0))
    cache = make_cache(strategy, model.config)
    with prepare_model(model, strategy):
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits
        for _ in range(steps):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            logits = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits
    tokens = prompt_len + steps
    assert cache.get_seq_length() == tokens
    measured = measure_cache_bytes(cache)
    formula = batch * kv_bytes(model.config, strategy, tokens, dtype_bytes=4, kv_tokens="context")
    if name == "r_kv":  # compressions at 64, 80, 96 tokens; one token short of the next
        assert cache.layers[0].compressions == 3
        assert cache.layers[0].keys.shape[-2] == strategy["budget"] + strategy["compress_every"] - 1
    assert abs(measured - formula) / formula < 0.05


def test_scales_and_zero_points_are_charged_as_the_checkpoint_stores_them():
    cfg = load_architecture(architecture_path("32b"))
    sixteen_bit_zeros = weight_bytes(cfg, 4, 128, zero_bits=16) / GIB
    assert abs(sixteen_bit_zeros - 18.01) / 18.01 > 0.01  # 16-bit zero points miss Table 1
    assert weight_bytes(cfg, 4, 128) == weight_bytes(cfg, 4, 128, zero_bits=4)  # GPTQ packs them
    symmetric = {"bits": 8, "method": "gptq", "group_size": 128, "scheme": "W8A16"}
    assert checkpoint_storage(symmetric) == {"scale_bits": 16, "zero_bits": 0}
    assert checkpoint_storage({"bits": 4, "method": "rtn", "group_size": 128}) == {"scale_bits": 16, "zero_bits": 4}
    four_b = load_architecture(architecture_path("4b"))
    assert weight_bytes(four_b, 8, 128, **checkpoint_storage(symmetric)) / GIB == pytest.approx(4.16, abs=0.005)
