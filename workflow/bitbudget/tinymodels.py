"""Tiny Qwen3-architecture reasoning models trained on CPU on the synthetic tasks.

A model directory holds ``config.json`` + ``model.safetensors`` (float32) and a character-level
``PreTrainedTokenizerFast`` with a Qwen3-style chat template whose generation prompt ends with
``<|im_start|>assistant\\n<think>\\n``.

Special tokens: ``<|im_start|>``, ``<|im_end|>`` (eos) and ``<|endoftext|>`` (pad) are special
tokens; ``<think>`` and ``</think>`` are single added tokens that are *not* flagged special, as
in Qwen3, so ``decode(..., skip_special_tokens=True)`` keeps them and answer parsing still sees
the end of thinking.

Word embeddings are tied with the lm_head (``tie_word_embeddings=True``, as Qwen3 0.6B-4B): the
embedding matrix is stored and counted once, in ``n_unquantized``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import torch

from . import tasks
from .artifacts import atomic_directory
from .memory import DECODER_LINEARS, count_parameters_of_model  # noqa: F401 (re-exported)
from .schema import schema_defaults

log = logging.getLogger(__name__)

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
THINK_TOKENS = [tasks.THINK_OPEN, tasks.THINK_CLOSE]
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n<think>\\n' }}"
    "{%- endif -%}"
)

# nn.Linear modules inside each decoder block (the quantized parameters, N_q in PAPER.md)


# --------------------------------------------------------------------------- tokenizer
def build_tokenizer():
    """Character-level fast tokenizer with the chat template and special tokens."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + THINK_TOKENS + CHARS)}
    # BPE without merges = one token per character; unknown characters map to pad
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=PAD))
    core.decoder = decoders.Fuse()
    from tokenizers import AddedToken

    core.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    core.add_tokens([AddedToken(t, normalized=False, special=False) for t in THINK_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=PAD,
        bos_token=None,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def prompt_text(tokenizer, problem: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": problem}], add_generation_prompt=True, tokenize=False
    )


# --------------------------------------------------------------------------- parameters
def count_parameters(model_dir) -> dict:
    """{n_quantized, n_unquantized}: decoder-block linear weights vs embeddings/lm_head/norms."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return count_parameters_of_model(model)


# --------------------------------------------------------------------------- data
def _training_texts(tokenizer, task: dict, rng: random.Random, batch_size: int):
    """One batch of (input_ids, loss_mask) pairs: full traces plus truncated/forced ones."""
    out = []
    for _ in range(batch_size):
        kind = rng.choice(task["kinds"])
        lo, hi = task["difficulty"][kind]
        q = tasks.make_synthetic_questions(kind, 1, rng.randrange(1 << 30), lo, hi)[0]
        prompt = prompt_text(tokenizer, q["problem"])
        trace = tasks.reference_trace(q)[1:]
        if rng.random() < task["truncated_fraction"]:
            # thinking cut at a random character, then the forced suffix and the true answer
            trace = trace[: rng.randrange(0, len(trace))]
        completion = trace + tasks.FORCED_SUFFIX + tasks.answer_text(q) + "}" + IM_END
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        # the first trace line is the only one that reads the prompt (seeds, n, options):
        # up-weight it, else its signal drowns among the lines that read the trace itself
        w = [1.0] * len(c_ids)
        copied = tasks.copied_prefix_length(trace)
        for i in range(copied):
            w[i] = task["first_line_weight"]
        out.append((p_ids + c_ids, [0.0] * len(p_ids) + w))
    return out


def _collate(batch, pad_id):
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    loss_mask = torch.zeros((len(batch), width), dtype=torch.float32)
    for i, (x, m) in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
        loss_mask[i, : len(x)] = torch.tensor(m, dtype=torch.float32)
    return ids, mask, loss_mask


# --------------------------------------------------------------------------- training
def train_tiny_model(
    out_dir,
    *,
    hidden_size: int,
    num_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    intermediate_size: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    task: dict,
    head_dim: int = 64,
    warmup_steps: int = 50,
    weight_decay: float = 0.01,
    max_position_embeddings: int = 2048,
    num_threads: int | None = None,
    log_every: int = 50,
    init_from=None,
) -> dict:
    """Train a tiny Qwen3 model on the synthetic task; save model + tokenizer atomically.

    ``task``: {"kinds": [...], "difficulty": {kind: [min, max]}, "truncated_fraction": f,
    "first_line_weight": w}; optional keys take the config schema's defaults.
    Returns a summary: parameter counts, final loss (mean of the last 10% of steps), wall time.
    """
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)

    task = {**schema_defaults("models", "*", "train", "task"), **task}
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = build_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    if init_from:  # continue training a saved model (same architecture)
        model = Qwen3ForCausalLM.from_pretrained(str(init_from), dtype=torch.float32)
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "intermediate_size", "head_dim", "vocab_size"):
            if getattr(model.config, key) != getattr(config, key):
                raise ValueError(f"init_from: {key} differs ({getattr(model.config, key)} != {getattr(config, key)})")
    else:
        model = Qwen3ForCausalLM(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay, betas=(0.9, 0.98))

    def lr_at(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        frac = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * frac)) * 0.95 + 0.05

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0 = time.time()
    losses = []
    for step in range(steps):
        ids, mask, loss_mask = _collate(_training_texts(tokenizer, task, rng, batch_size), tokenizer.pad_token_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        target = ids[:, 1:]
        w = loss_mask[:, 1:]
        sel = w > 0
        tok_loss = torch.nn.functional.cross_entropy(logits[sel], target[sel], reduction="none")
        loss = (tok_loss * w[sel]).sum() / w[sel].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            log.info("step %d loss %.4f (%.1fs)", step, losses[-1], time.time() - t0)
    wall = time.time() - t0
    tail = losses[-max(1, steps // 10) :]
    counts = count_parameters_of_model(model)
    summary = {
        "n_params": counts["n_quantized"] + counts["n_unquantized"],
        **counts,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate_size,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": warmup_steps,
        "seed": seed,
        "init_from": str(init_from) if init_from else None,
        "task": task,
        "task_version": tasks.SYNTHETIC_TASK_VERSION,
        "final_loss": sum(tail) / len(tail),
        "wall_time_s": round(wall, 1),
        "torch_threads": torch.get_num_threads(),
    }
    with atomic_directory(out_dir) as tmp:
        model.eval()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
