import json

import pytest
import torch

from bitbudget import quantize, tinymodels
from bitbudget.specs import WeightFormat


def rtn(bits: int, group_size: int) -> WeightFormat:
    """This project's round to nearest (the schema's default method)."""
    return WeightFormat.from_config({"bits": bits, "group_size": group_size})


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    d = tmp_path_factory.mktemp("ckpt") / "m"
    tok = tinymodels.build_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, head_dim=64, tie_word_embeddings=True)
    Qwen3ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _weights(d):
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_groups_hold_at_most_2_pow_b_values(small_ckpt, tmp_path, bits):
    out = tmp_path / f"q{bits}"
    meta = quantize.quantize_checkpoint(small_ckpt, out, rtn(bits, 32))
    assert meta == json.loads((out / "quantization.json").read_text())
    assert meta["bits"] == bits and meta["group_size"] == 32 and meta["method"] == "rtn"
    src, dst = _weights(small_ckpt), _weights(out)
    n_q = 0
    for name, w in dst.items():
        if ".layers." in name and name.split(".")[-2] in tinymodels.DECODER_LINEARS:
            n_q += w.numel()
            groups = w.reshape(w.shape[0], -1, 32)
            for row in groups.reshape(-1, 32)[:50]:
                assert len(torch.unique(row)) <= 2**bits
            assert not torch.equal(w, src[name])
        else:
            assert torch.equal(w, src[name]), name
    assert n_q == meta["n_quantized_params"]
    assert (out / "tokenizer.json").exists()
    from safetensors.torch import load_file

    codes = load_file(str(out / "quantization.safetensors"))
    key = "model.layers.0.mlp.down_proj.weight"
    c, s, z = codes[key + ".codes"], codes[key + ".scales"], codes[key + ".zeros"]
    assert c.dtype == torch.uint8 and int(c.max()) < 2**bits and s.shape == (64, 128 // 32)
    deq = (c.float().reshape(64, -1, 32) - z.float()[..., None]) * s[..., None]
    assert torch.allclose(deq.reshape(64, 128), dst[key], atol=1e-6)


def test_error_shrinks_with_bits(small_ckpt, tmp_path):
    src = _weights(small_ckpt)
    key = "model.layers.0.self_attn.q_proj.weight"
    errs = []
    for bits in (2, 4, 8):
        quantize.quantize_checkpoint(small_ckpt, tmp_path / f"q{bits}", rtn(bits, 64))
        errs.append((_weights(tmp_path / f"q{bits}")[key] - src[key]).abs().max().item())
    assert errs[0] > errs[1] > errs[2] > 0


def test_16_bit_is_identical_copy(small_ckpt, tmp_path):
    meta = quantize.quantize_checkpoint(small_ckpt, tmp_path / "q16", rtn(16, 64))
    assert (tmp_path / "q16" / "model.safetensors").read_bytes() == (small_ckpt / "model.safetensors").read_bytes()
    assert meta["n_quantized_params"] > 0 and meta["n_unquantized_params"] > 0


def test_loads_with_auto_model(small_ckpt, tmp_path):
    from transformers import AutoModelForCausalLM

    quantize.quantize_checkpoint(small_ckpt, tmp_path / "q4", rtn(4, 64))
    AutoModelForCausalLM.from_pretrained(str(tmp_path / "q4"))


def test_bad_arguments(small_ckpt, tmp_path):
    with pytest.raises(ValueError, match="group_size"):
        quantize.quantize_checkpoint(small_ckpt, tmp_path / "x", rtn(4, 48))
    with pytest.raises(ValueError, match="bits"):
        quantize.quantize_checkpoint(small_ckpt, tmp_path / "x", rtn(5, 64))
    assert not (tmp_path / "x").exists()
