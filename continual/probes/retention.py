"""The retention probe: how much of the model's original capability survives the stages.

Three components, measured on the base model once and after every stage:
  cloze       accuracy on general-knowledge cloze items (cloze.yaml; answer vs three distractors, summed
              log-probability) -- chance is 1/4
  perplexity  on held-out general English text (the ``probe`` split of ``general_text``), over non-overlapping
              windows; ``ppl_ratio`` = perplexity / base perplexity
  kl          mean per-token KL(base || model) over the first ``kl_tokens`` predicted positions of that text, with the
              base model's log-probabilities computed once and kept

  retention = (cloze - chance) / (cloze_base - chance): 1 = nothing lost, 0 = down to chance.

The probe always uses plain prompts (no chat template): it measures the language model as it was pretrained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from continual.metrics import retention
from continual.scoring import model_device, score_candidates

CLOZE_FILE = Path(__file__).with_name("cloze.yaml")


def load_cloze_items(path: Path = CLOZE_FILE) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)["items"]


@dataclass
class ProbeSettings:
    text_tokens: int = 2048  # predicted tokens of general text for perplexity
    kl_tokens: int = 1024  # of those, how many positions enter the KL (base log-probs are kept: tokens x vocab)
    window: int = 256  # tokens per window
    batch_size: int = 64  # cloze rows per forward
    text_batch_size: int = 4  # windows per forward


class RetentionProbe:
    def __init__(self, tokenizer, text: str, items: list[dict] | None = None,
                 settings: ProbeSettings | None = None):
        self.tokenizer = tokenizer
        self.settings = s = settings or ProbeSettings()
        items = load_cloze_items() if items is None else items
        self.prompts = [it["prompt"] for it in items]
        self.candidates = [[" " + it["answer"]] + [" " + d for d in it["distractors"]] for it in items]
        self.chance = float(np.mean([1 / len(c) for c in self.candidates]))
        # non-overlapping windows; each window predicts all but its first token
        step = s.window
        needed = s.text_tokens + math.ceil(s.text_tokens / (step - 1)) + 1
        ids = tokenizer(text[:needed * 16])["input_ids"][:needed]  # no tokenizer makes a token of 16+ characters
        self.windows = [ids[i:i + step] for i in range(0, len(ids), step) if len(ids[i:i + step]) > 1]
        self.windows = _cap_predictions(self.windows, s.text_tokens)
        if not self.windows:
            raise ValueError("the probe text is too short to score")
        self.base: dict | None = None
        self._base_logprobs: torch.Tensor | None = None

    def calibrate(self, base_model) -> dict:
        """Measure the base model and keep what the later measurements compare with. Returns the base row."""
        cloze, cloze_norm = self._cloze(base_model)
        nll, n, logprobs = self._text(base_model, reference=None)
        self._base_logprobs = logprobs
        self.base = {"cloze": cloze, "cloze_norm": cloze_norm, "perplexity": math.exp(nll / n)}
        return self.measure_from(cloze, cloze_norm, nll / n, 0.0)

    def measure(self, model) -> dict:
        if self.base is None:
            raise RuntimeError("calibrate() the probe on the base model first")
        cloze, cloze_norm = self._cloze(model)
        nll, n, kl = self._text(model, reference=self._base_logprobs)
        return self.measure_from(cloze, cloze_norm, nll / n, kl)

    def measure_from(self, cloze, cloze_norm, mean_nll, kl) -> dict:
        base = self.base or {"cloze": cloze, "perplexity": math.exp(mean_nll)}
        ppl = math.exp(mean_nll)
        return {"cloze": cloze, "cloze_norm": cloze_norm, "cloze_chance": self.chance,
                "retention": retention(cloze, base["cloze"], self.chance, len(self.prompts)),
                "perplexity": ppl, "ppl_ratio": ppl / base["perplexity"], "kl": kl}

    def _cloze(self, model) -> tuple[float, float]:
        scores = score_candidates(model, self.tokenizer, self.prompts, self.candidates,
                                  batch_size=self.settings.batch_size, desc="probe: cloze")
        labels = np.zeros(len(self.prompts), dtype=int)  # the answer is candidate 0
        return scores.accuracy(labels), scores.accuracy(labels, normalise=True)

    @torch.inference_mode()
    def _text(self, model, reference: torch.Tensor | None):
        """Summed NLL, number of predicted tokens, and either the KL positions' log-probs (reference None) or the
        mean KL(reference || model) over those positions."""
        device, kl_left = model_device(model), self.settings.kl_tokens
        was_training = model.training
        model.eval()
        nll, n, kept, kl_sum, kl_n = 0.0, 0, [], 0.0, 0
        try:
            for i in range(0, len(self.windows), self.settings.text_batch_size):
                batch = self.windows[i:i + self.settings.text_batch_size]
                width = max(map(len, batch))
                ids = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros_like(ids)
                for b, w in enumerate(batch):
                    ids[b, :len(w)], mask[b, :len(w)] = torch.tensor(w), 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
                for b, w in enumerate(batch):
                    lp = logits[b, :len(w) - 1].log_softmax(-1)
                    target = torch.tensor(w[1:], device=lp.device)
                    nll -= float(lp.gather(1, target[:, None]).sum())
                    n += len(w) - 1
                    if kl_left > 0:
                        take = lp[:kl_left].cpu()
                        kl_left -= len(take)
                        if reference is None:
                            kept.append(take)
                        else:
                            ref = reference[kl_n:kl_n + len(take)]
                            kl_sum += float((ref.exp() * (ref - take)).sum())
                            kl_n += len(take)
        finally:
            model.train(was_training)
        if reference is None:
            return nll, n, torch.cat(kept) if kept else torch.empty(0)
        return nll, n, kl_sum / kl_n if kl_n else float("nan")


def _cap_predictions(windows: list[list[int]], limit: int) -> list[list[int]]:
    """Trim the window list so that exactly ``limit`` tokens are predicted (or all there are)."""
    out, left = [], limit
    for w in windows:
        if left <= 0:
            break
        w = w[:left + 1]
        out.append(w)
        left -= len(w) - 1
    return out
