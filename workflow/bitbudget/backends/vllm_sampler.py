"""The vLLM logits processor that draws the vLLM engine's sampled tokens history-free.

vLLM loads it by name (bitbudget.backends.vllm.DRAW_PROCESSOR) in its engine process. A request
whose ``SamplingParams.extra_args`` carry a draw (bitbudget.backends.vllm.DRAW_ARG: its key and
sampling settings) is greedy for vLLM; this processor draws its token with
bitbudget.backends.sampler at the request's position (prompt tokens plus the tokens it has
generated) and leaves that token the only finite score, so vLLM's argmax takes it. Requests
without a draw (greedy traces) pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from bitbudget.backends.sampler import draw
from bitbudget.backends.vllm import DRAW_ARG


@dataclass(frozen=True)
class RequestDraw:
    key: int
    settings: tuple  # (temperature, top_k, top_p)
    prompt_tokens: int
    output_ids: list  # vLLM's running list of the request's generated tokens (read for its length)

    def position(self) -> int:
        return self.prompt_tokens + len(self.output_ids)


def request_draw(params, prompt_ids: list[int] | None, output_ids: list[int]) -> RequestDraw | None:
    found = (params.extra_args or {}).get(DRAW_ARG)
    if not found:
        return None
    settings = (float(found["temperature"]), int(found["top_k"]), float(found["top_p"]))
    return RequestDraw(int(found["key"]), settings, len(prompt_ids or ()), output_ids)


class HistoryFreeSampler(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.requests: dict[int, RequestDraw] = {}  # batch index -> its draw

    def is_argmax_invariant(self) -> bool:
        return False  # it decides the argmax of the requests it draws

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.requests, batch_update, request_draw)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        by_settings: dict[tuple, list[int]] = {}
        for index, request in self.requests.items():
            by_settings.setdefault(request.settings, []).append(index)
        for settings, indices in by_settings.items():
            self._draw_rows(logits, sorted(indices), settings)
        return logits

    def _draw_rows(self, logits: torch.Tensor, indices: list[int], settings: tuple) -> None:
        rows = torch.tensor(indices, dtype=torch.long, device=logits.device)
        keys = torch.tensor([self.requests[i].key for i in indices], dtype=torch.long)
        positions = torch.tensor([self.requests[i].position() for i in indices], dtype=torch.long)
        tokens = draw(logits[rows], keys, positions, *settings)
        logits[rows] = float("-inf")
        logits[rows, tokens] = 0.0
