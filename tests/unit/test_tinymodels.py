import re
from pathlib import Path

import pytest
import torch

from bitbudget import tasks, tinymodels

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "tiny_models"
NAMES = ["tiny-s", "tiny-m", "tiny-l"]


@pytest.fixture(scope="module")
def tok():
    return tinymodels.build_tokenizer()


def test_tokenizer_round_trip_and_specials(tok):
    text = "Fib mod 10: a=3 b=5 n=12.\n00:9 0943\n**Final Answer**\n\\boxed{42} ~!@#"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tok.decode(ids) == text
    for special in ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>"]:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    ids = tok("<think>\nx</think>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>\nx</think>"


def test_chat_template_ends_with_think(tok):
    p = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert p == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_loads_and_answers(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = MODELS / name
    tok = AutoTokenizer.from_pretrained(str(d))
    model = AutoModelForCausalLM.from_pretrained(str(d)).eval()
    assert model.config.head_dim == 64 and model.config.model_type == "qwen3"
    assert model.config.num_key_value_heads <= model.config.num_attention_heads
    assert next(model.parameters()).dtype == torch.float32
    q = tasks.make_synthetic_questions("integer", 1, 5, 4, 4)[0]
    prompt = tok.apply_chat_template([{"role": "user", "content": q["problem"]}], add_generation_prompt=True,
                                     tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=400, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:])
    assert "</think>" in text
    assert re.search(r"\\boxed\{[^}]+\}", text.split("</think>", 1)[1])


@pytest.mark.parametrize("name", NAMES)
def test_forced_answer_is_well_formed(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = MODELS / name
    tok = AutoTokenizer.from_pretrained(str(d))
    model = AutoModelForCausalLM.from_pretrained(str(d)).eval()
    q = tasks.make_synthetic_questions("choice", 1, 5, 20, 20)[0]
    text = tinymodels.prompt_text(tok, q["problem"]) + tasks.reference_trace(q)[1:40] + tasks.FORCED_SUFFIX
    enc = tok(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=6, pad_token_id=tok.pad_token_id)
    ans = tok.decode(out[0, enc["input_ids"].shape[1]:])
    assert ans[0] in "ABCD" and ans[1:].startswith("}<|im_end|>")


@pytest.mark.parametrize("name", NAMES)
def test_count_parameters(name):
    c = tinymodels.count_parameters(MODELS / name)
    import json

    summary = json.loads((MODELS / name / "training.json").read_text())
    assert c["n_quantized"] == summary["n_quantized"] and c["n_unquantized"] == summary["n_unquantized"]
    assert c["n_quantized"] > c["n_unquantized"] > 0


def test_sizes_increase():
    n = [sum(tinymodels.count_parameters(MODELS / name).values()) for name in NAMES]
    assert n == sorted(n) and n[0] * 4 < n[-1]
