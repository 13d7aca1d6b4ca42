"""R-KV: redundancy-aware KV eviction (Cai et al. 2025, arXiv 2505.24133), HF-cache form.

What is captured. :func:`install_query_hooks` puts two forward hooks on every attention
module that has ``q_proj``/``q_norm`` (Qwen3): one on ``q_norm`` keeps its output (the
query after ``q_proj`` and the per-head RMSNorm, ``[B, T, Hq, D]``); one on the attention
module itself applies RoPE to it with the ``position_embeddings`` (cos, sin) the module
received, i.e. exactly the query that attended, and appends it to that layer's rolling
buffer of the last ``observation_window`` queries (the prompt's last tokens after prefill,
then the generated tokens). Modules without ``q_norm`` use the ``q_proj`` output.

When. Right after a layer's attention ran, if the layer stores ``>= budget +
compress_every`` tokens it is compressed to ``budget`` tokens. All layers compress at the
same step, so between forwards every layer stores the same count; inside the forward the
mask was sized before any layer compressed. The cache therefore holds at most ``budget +
compress_every`` tokens per row and head (more only transiently during a prefill longer
than that), and the memory model charges that peak.

Score, as the authors' reference implementation computes it (repository Zefan-Cai/R-KV),
per batch row and KV head. The ``w = observation_window`` most recent stored tokens form
the window and are always kept; only the ``n = S - w`` older tokens are scored:
    importance ``I_i``: attention logits ``q . k_i / sqrt(D)`` of every buffered query onto
        the older keys, reduced over the query heads of the GQA group by their *maximum*
        (raw logits, before any softmax); a softmax over the ``n`` older keys only (the
        window's keys take no share of it); the mean over the buffered queries; then a
        max-pool along keys (kernel ``pool_kernel``, stride 1, same length). No causal
        mask is needed: every older key precedes every buffered query.
    redundancy ``R_i``: cosine similarities ``c_ji`` between all ``S`` stored keys, the
        diagonal zeroed; for each token ``j`` the similarity to its *last* highly similar
        token (largest index ``l`` with ``c_jl > 0.5``) is zeroed, so the most recent copy
        of a repeated pattern looks less redundant than its older copies (as in the
        authors' code, a token with no highly similar partner has its entry for the first
        stored token zeroed instead); ``R`` is the softmax over all ``S`` tokens of the
        column means ``mean_j c_ji``, read at the ``n`` older tokens.
    ``score_i = lam * I_i - (1 - lam) * R_i``; the authors' default lam is 0.07, the
        paper describes ~0.1 (``lam`` is a config field).
The ``budget - w`` highest scores are kept with the window, in original order. The
authors compute the redundancy of batch row 0 only and apply it to every row; here each
row uses its own keys. Scores are computed in at least float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache

from .base import EvictingLayer


# a pair of keys whose cosine similarity exceeds this is "highly similar" (authors' value)
SIMILARITY_THRESHOLD = 0.5
# added to key norms before dividing (authors' value), so a zero key has similarity 0
NORM_EPS = 1e-8


def importance_scores(queries: torch.Tensor, keys: torch.Tensor, window: int, pool_kernel: int) -> torch.Tensor:
    """Attention of the buffered queries ``[B, Hq, Wq, D]`` onto the keys ``[B, Hkv, S, D]``
    older than the last ``window``: GQA max of raw logits, softmax over those ``S - window``
    keys, mean over queries, max-pooled along keys. Returns ``[B, Hkv, S - window]``."""
    b, hkv, s, d = keys.shape
    older = s - window
    hq, wq = queries.shape[1], queries.shape[2]
    q = queries.view(b, hkv, hq // hkv, wq, d)
    logits = torch.einsum("bhgwd,bhsd->bhgws", q, keys[:, :, :older]) / math.sqrt(d)
    attention = logits.amax(dim=2).softmax(dim=-1).mean(dim=-2)
    if pool_kernel > 1:
        pooled = F.max_pool1d(attention.reshape(b * hkv, 1, older), pool_kernel, stride=1,
                              padding=pool_kernel // 2)
        attention = pooled[..., :older].reshape(b, hkv, older)
    return attention


def redundancy_scores(keys: torch.Tensor) -> torch.Tensor:
    """Redundancy of every stored key ``[B, Hkv, S, D]`` -> ``[B, Hkv, S]`` (softmax over S),
    one batch row at a time (the similarity matrix is ``S x S`` per head)."""
    rows = []
    for row in keys:  # [Hkv, S, D]
        unit = row / (row.norm(dim=-1, keepdim=True) + NORM_EPS)
        sim = unit @ unit.transpose(-1, -2)
        sim.diagonal(dim1=-2, dim2=-1).zero_()
        positions = torch.arange(sim.shape[-1], device=sim.device)
        last_similar = torch.where(sim > SIMILARITY_THRESHOLD, positions, 0).amax(dim=-1, keepdim=True)
        sim.scatter_(-1, last_similar, 0.0)
        rows.append(sim.mean(dim=-2).softmax(dim=-1))
    return torch.stack(rows)


def rkv_scores(queries: torch.Tensor, keys: torch.Tensor, window: int, pool_kernel: int, lam: float) -> torch.Tensor:
    """``lam * importance - (1 - lam) * redundancy`` of the keys older than the last
    ``window``, shape ``[B, Hkv, S - window]``; computed in at least float32."""
    dtype = torch.promote_types(keys.dtype, torch.float32)
    keys = keys.to(dtype)
    older = keys.shape[-2] - window
    importance = importance_scores(queries.to(dtype), keys, window, pool_kernel)
    redundancy = redundancy_scores(keys)[..., :older]
    return lam * importance - (1.0 - lam) * redundancy


def kept_indices(scores: torch.Tensor, slots: int, stored: int) -> torch.Tensor:
    """Indices ``[B, Hkv, slots + window]`` to keep, ascending: the ``slots`` best-scored
    older tokens and the whole window (the tokens from ``scores.shape[-1]`` to ``stored``)."""
    older = scores.shape[-1]
    best = scores.topk(slots, dim=-1).indices.sort(dim=-1).values
    window = torch.arange(older, stored, device=scores.device).expand(*scores.shape[:-1], -1)
    return torch.cat([best, window], dim=-1)


class RKVLayer(EvictingLayer):
    def __init__(
        self,
        budget: int,
        observation_window: int = 8,
        pool_kernel: int = 7,
        lam: float = 0.1,
        compress_every: int = 128,
    ):
        super().__init__(budget)
        self.observation_window = int(observation_window)
        self.pool_kernel = int(pool_kernel)
        self.lam = float(lam)
        self.compress_every = int(compress_every)
        self.queries: torch.Tensor | None = None  # [B, Hq, <=W, D], RoPE applied
        self.compressions = 0

    def get_max_length(self) -> int:
        return self.budget + self.compress_every

    def update(self, key_states, value_states, *args, **kwargs):
        self.keys, self.values = self._append(key_states, value_states)
        return self.keys, self.values

    def record_queries(self, q: torch.Tensor) -> None:
        q = q.detach()
        buf = q if self.queries is None else torch.cat([self.queries, q.to(self.queries.dtype)], dim=-2)
        self.queries = buf[..., -self.observation_window :, :].contiguous()

    def maybe_compress(self) -> bool:
        if self.stored_length() < self.budget + self.compress_every:
            return False
        self.compress()
        return True

    def scores(self) -> torch.Tensor:
        """Scores of the stored tokens before the window, shape ``[B, Hkv, S - window]``."""
        if self.queries is None:
            raise RuntimeError(
                "r_kv cache has no captured queries: call bitbudget.kv.prepare_model(model, "
                "strategy) before generating"
            )
        return rkv_scores(self.queries, self.keys, min(self.observation_window, self.budget),
                          self.pool_kernel, self.lam)

    def compress(self) -> None:
        s = self.stored_length()
        if s <= self.budget:
            return
        window = min(self.observation_window, self.budget)
        idx = kept_indices(self.scores(), self.budget - window, s)
        idx = idx.unsqueeze(-1).expand(-1, -1, -1, self.keys.shape[-1])
        self.keys = self.keys.gather(2, idx).contiguous()
        self.values = self.values.gather(2, idx).contiguous()
        self.compressions += 1

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        if self.queries is not None:
            self.queries = self.queries[indices, ...]

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self.queries is not None:
            self.queries = self.queries.repeat_interleave(repeats, dim=0)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        if self.queries is not None:
            self.queries = self.queries.index_select(0, beam_idx.to(self.queries.device))

    def reset(self) -> None:
        super().reset()
        self.queries = None


class RKVCache(Cache):
    """One :class:`RKVLayer` per decoder layer; needs :func:`install_query_hooks`."""

    def __init__(self, num_layers: int, budget: int, observation_window: int = 8,
                 pool_kernel: int = 7, lam: float = 0.1, compress_every: int = 128):
        super().__init__(
            layers=[
                RKVLayer(budget, observation_window, pool_kernel, lam, compress_every)
                for _ in range(num_layers)
            ]
        )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class QueryHooks:
    """Handle of the hooks; ``.remove()`` or use as a context manager."""

    def __init__(self, handles: list):
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def install_query_hooks(model: torch.nn.Module) -> QueryHooks:
    handles = []
    for module in model.modules():
        if not (hasattr(module, "q_proj") and hasattr(module, "layer_idx")):
            continue
        src = module.q_norm if getattr(module, "q_norm", None) is not None else module.q_proj
        slot: dict = {}

        def keep(_mod, _args, output, slot=slot):
            slot["q"] = output

        def after_attention(mod, args, kwargs, output, slot=slot):
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            q = slot.pop("q", None)
            if not isinstance(cache, RKVCache) or q is None:
                return None
            layer = cache.layers[mod.layer_idx]
            if q.dim() == 3:  # q_proj output [B, T, Hq*D]
                q = q.view(*q.shape[:2], -1, mod.head_dim)
            q = q.transpose(1, 2)  # [B, Hq, T, D]
            pe = kwargs.get("position_embeddings")
            if pe is not None:
                cos, sin = pe
                cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
                q = q * cos + _rotate_half(q) * sin
            layer.record_queries(q)
            layer.maybe_compress()
            return None

        handles.append(src.register_forward_hook(keep))
        handles.append(module.register_forward_hook(after_attention, with_kwargs=True))
    if not handles:
        raise ValueError("no attention modules with q_proj/layer_idx found for r_kv hooks")
    return QueryHooks(handles)
