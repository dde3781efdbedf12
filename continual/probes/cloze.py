"""The knowledge cloze probe: general-knowledge items written for this project (cloze.yaml), each answer against
three distractors, scored by summed log-probability like every choice task. Chance is the mean of 1/candidates.

  cloze       accuracy
  cloze_norm  accuracy by mean log-probability per token
  retention   (cloze - chance) / (cloze_base - chance): 1 = nothing lost, 0 = down to chance; NaN when the base
              model is not two binomial standard errors above chance (a ratio over noise would be noise)

The probe always uses plain prompts (no chat template): it measures the language model as it was pretrained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from continual.errors import ContinualError
from continual.metrics import retention
from continual.options import Options, option
from continual.probes.base import Column, Probe
from continual.scoring import score_candidates

CLOZE_FILE = Path(__file__).with_name("cloze.yaml")
RETENTION = ("(cloze_final - chance) / (cloze_base - chance) on the knowledge cloze probe; 1 = nothing lost; null "
             "when the base model is not 2 standard errors above chance")


def load_cloze_items(path: Path = CLOZE_FILE) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            items = yaml.safe_load(f)["items"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ContinualError(f"cloze items file '{path}' is unreadable ({type(exc).__name__}); it must be YAML with "
                             "items: [{prompt, answer, distractors}]") from None
    bad = [i for i, it in enumerate(items) if not (isinstance(it, dict) and it.get("prompt") and it.get("answer")
                                                   and isinstance(it.get("distractors"), list))]
    if bad or not items:
        raise ContinualError(f"cloze items file '{path}': item {bad[0] if bad else 0} needs prompt, answer and a "
                             "list of distractors")
    return items


@dataclass
class ClozeOptions(Options):
    items: str = option("", "YAML file of cloze items (items: [{prompt, answer, distractors}])",
                        shown_default="the packaged 247 items (continual/probes/cloze.yaml)")


class ClozeProbe(Probe):
    name = "cloze"
    Config = ClozeOptions

    def setup(self, ctx):
        items = load_cloze_items(Path(self.config.items) if self.config.items else CLOZE_FILE)
        self.tokenizer, self.batch_size = ctx.tokenizer, ctx.batch_size
        self.prompts = [it["prompt"] for it in items]
        self.candidates = [[" " + it["answer"]] + [" " + d for d in it["distractors"]] for it in items]
        self.chance = float(np.mean([1 / len(c) for c in self.candidates]))
        self.base_cloze: float | None = None

    def columns(self):
        return [Column("cloze", f"knowledge cloze accuracy ({len(self.prompts)} items, answer vs distractors; "
                       f"chance {self.chance:.2f})", higher_is_better=True, chance=self.chance,
                       label="knowledge cloze accuracy", unit_interval=True),
                Column("cloze_norm", "knowledge cloze accuracy by mean log-probability per answer token",
                       higher_is_better=True, chance=self.chance, headline=False, unit_interval=True),
                Column("retention", RETENTION, higher_is_better=True, chance=0.0, primary=True,
                       label="retention of original capability (1 = nothing lost)")]

    def calibrate(self, base_model):
        self.base_cloze = None
        row = self.measure(base_model)
        self.base_cloze = row["cloze"]
        return row

    def measure(self, model):
        scores = score_candidates(model, self.tokenizer, self.prompts, self.candidates, batch_size=self.batch_size,
                                  desc="probe: cloze")
        labels = np.zeros(len(self.prompts), dtype=int)  # the answer is candidate 0
        cloze = scores.accuracy(labels)
        base = cloze if self.base_cloze is None else self.base_cloze
        return {"cloze": cloze, "cloze_norm": scores.accuracy(labels, normalise=True),
                "retention": retention(cloze, base, self.chance, len(self.prompts))}
