"""Perplexity on held-out general English text (the ``probe`` split of continual.probes.general_text, never used
for training), over non-overlapping windows; ``ppl_ratio`` is the perplexity over the base model's."""

from __future__ import annotations

import math

import torch

from continual.probes.base import Column
from continual.probes.text import TextOptions, TextProbe, window_logprobs


class PerplexityProbe(TextProbe):
    name = "perplexity"
    Config = TextOptions

    def setup(self, ctx):
        super().setup(ctx)
        self.base_ppl: float | None = None

    def columns(self):
        return [Column("perplexity", f"perplexity on held-out general text ({self.config.tokens} tokens)",
                       higher_is_better=False, headline=False, digits=2),
                Column("ppl_ratio", "perplexity on held-out general text, this model / base model",
                       higher_is_better=False, chance=1.0, label="perplexity ratio to base", digits=2)]

    def calibrate(self, base_model):
        self.base_ppl = None
        row = self.measure(base_model)
        self.base_ppl = row["perplexity"]
        return row

    def measure(self, model):
        nll, n = 0.0, 0
        for w, lp in window_logprobs(model, self.windows, self.config.batch_size):
            target = torch.tensor(w[1:], device=lp.device)
            nll -= float(lp.gather(1, target[:, None]).sum())
            n += len(w) - 1
        ppl = math.exp(nll / n)
        return {"perplexity": ppl, "ppl_ratio": ppl / (self.base_ppl if self.base_ppl is not None else ppl)}
