"""KL(base || model): the mean per-token KL divergence from the base model's next-token distribution to the
model's, over the first ``tokens`` predicted positions of held-out general text. The base model's
log-probabilities are computed once (calibrate) and kept: tokens x vocabulary floats (1,024 x 49,152 x 4 bytes =
200 MB for SmolLM2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from continual.options import option
from continual.probes.base import Column
from continual.probes.text import TextOptions, TextProbe, window_logprobs


@dataclass
class KLOptions(TextOptions):
    tokens: int = option(1024, "predicted positions of text that enter the KL", low=1)


class KLProbe(TextProbe):
    name = "kl"
    Config = KLOptions
    full_windows = True  # the positions read are computed in the same contexts as the perplexity probe's

    def setup(self, ctx):
        super().setup(ctx)
        self.reference: list[torch.Tensor] = []

    def columns(self):
        return [Column("kl", f"mean per-token KL(base || model) on held-out general text ({self.config.tokens} "
                       "positions), nats", higher_is_better=False, chance=0.0, label="KL(base || model), nats/token")]

    def _positions(self, model):
        """The log-probabilities of the first ``tokens`` predicted positions, window by window."""
        left = self.config.tokens
        for _, lp in window_logprobs(model, self.windows, self.config.batch_size):
            if left <= 0:
                break
            part = lp[:left].cpu()
            left -= len(part)
            yield part

    def calibrate(self, base_model):
        self.reference = list(self._positions(base_model))
        return {"kl": 0.0}

    def measure(self, model):
        total, n = 0.0, 0
        for ref, lp in zip(self.reference, self._positions(model)):
            total += float((ref.exp() * (ref - lp)).sum())  # summed per window in float64, as the mean's parts
            n += len(ref)
        return {"kl": total / n if n else math.nan}
