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

Score, per batch row and KV head, over the stored tokens ``i`` (queries grouped by GQA):
    importance ``I_i`` = softmax attention of the buffered queries onto key ``i`` (causal:
        a query never sees keys after its own position), averaged over the window queries
        and the query heads of the group, then max-pooled along keys (kernel ``pool_kernel``,
        stride 1);
    redundancy ``R_i`` = softmax over ``i`` of the mean cosine similarity of key ``i`` to
        the other stored keys of that head;
    ``score_i = lam * I_i - (1 - lam) * R_i`` (lam = 0.1 in the paper).
The ``observation_window`` most recent tokens are always kept; the other ``budget -
observation_window`` slots go to the highest scores; kept tokens stay in original order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache

from .base import EvictingLayer


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
        """``lam * importance - (1 - lam) * redundancy``, shape ``[B, Hkv, S]``."""
        if self.queries is None:
            raise RuntimeError(
                "r_kv cache has no captured queries: call bitbudget.kv.prepare_model(model, "
                "strategy) before generating"
            )
        keys = self.keys.float()
        b, hkv, s, d = keys.shape
        q = self.queries.float()
        hq, w = q.shape[1], q.shape[2]
        q = q.view(b, hkv, hq // hkv, w, d)
        logits = torch.einsum("bhgwd,bhsd->bhgws", q, keys) / math.sqrt(d)
        # query j of the window sits at stored index s - w + j and sees keys up to it
        future = torch.arange(s, device=keys.device)[None, :] > (
            s - w + torch.arange(w, device=keys.device)
        )[:, None]
        logits = logits.masked_fill(future, float("-inf"))
        importance = logits.softmax(dim=-1).mean(dim=(2, 3))
        k = self.pool_kernel
        if k > 1:
            pooled = F.max_pool1d(importance.reshape(b * hkv, 1, s), k, stride=1, padding=k // 2)
            importance = pooled[..., :s].reshape(b, hkv, s)
        kn = F.normalize(keys, dim=-1)
        sim = kn @ kn.transpose(-1, -2)
        sim.diagonal(dim1=-2, dim2=-1).zero_()
        redundancy = (sim.sum(dim=-1) / max(s - 1, 1)).softmax(dim=-1)
        return self.lam * importance - (1.0 - self.lam) * redundancy

    def compress(self) -> None:
        s = self.stored_length()
        if s <= self.budget:
            return
        score = self.scores()
        keep_recent = min(self.observation_window, self.budget)
        score[..., s - keep_recent :] = float("inf")
        idx = score.topk(self.budget, dim=-1).indices.sort(dim=-1).values
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
