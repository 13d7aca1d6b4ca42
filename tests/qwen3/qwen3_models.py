"""Tiny Qwen3 models with Qwen3's real vocabulary, saved with its tokenizer.

`scripted_qwen3` is a random-weight Qwen3 whose attention and MLP outputs are zeroed, so its
residual stream is the embedding of the current token and the next-token logits depend on
that token only: embeddings and lm_head rows are set so that greedy decoding follows a given
token-to-token path (a real model run through the real engine, with a known answer)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# the path's preferred token wins by this logit margin over every other token
PATH_LOGIT = 20.0
# hidden sizes are multiples of this: two heads of 32 dims, a head size vLLM's CPU attention runs
HIDDEN_STEP = 64


def tiny_config(vocab_size: int, hidden: int) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=hidden // 2, max_position_embeddings=4096,
        tie_word_embeddings=False, torch_dtype="float32",
    )


def random_qwen3(tokenizer_dir: Path, out: Path, hidden: int = 32, seed: int = 0) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(tiny_config(len(tokenizer), hidden)).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def scripted_qwen3(tokenizer_dir: Path, out: Path, path: dict[int, int], default_next: int, seed: int = 0) -> Path:
    """Greedy decoding goes ``t -> path[t]``; any token not in ``path`` goes to ``default_next``."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    states = [None, *path]  # state 0: every token off the path
    hidden = -(-len(states) // HIDDEN_STEP) * HIDDEN_STEP  # one dimension per state
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(tiny_config(len(tokenizer), hidden)).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        embed = model.model.embed_tokens.weight
        head = model.lm_head.weight
        embed.zero_()
        embed[:, 0] = 1.0
        head.zero_()
        head[default_next, 0] = PATH_LOGIT
        for state, token in enumerate(states[1:], start=1):
            embed[token].zero_()
            embed[token, state] = 1.0
            head[path[token], state] = PATH_LOGIT
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
