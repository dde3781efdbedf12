"""Distillation (LwF-style, Li & Hoiem 2016, at the token level): stay close to a frozen teacher while learning.

Every step adds ``weight * KL(teacher || student)``, the mean over the distilled positions of the per-token KL
between the teacher's and the student's next-token distributions at temperature ``temperature`` (times
temperature^2, Hinton et al. 2015; T = 2 by default, as LwF). Which positions are distilled (``positions``):

  prompt  (default, LwF-like) the positions whose next token is a prompt token (non-padding, label -100): the
          teacher's behaviour on the inputs is kept while the answer positions, the ones the task's loss trains
          towards the new label, are left to that loss (LwF distils the old outputs, not the new task's head)
  all     every non-padding position, the answer's too: the KL then pulls the new label back toward the
          teacher's prediction

The teacher is

  previous  the model as it was before the stage (a frozen copy; for a LoRA model the copy carries the adapter)
  original  the model before any stage: protects the original capability rather than earlier tasks

With ``general_batch`` > 0 each step also draws that many general-English passages (the strategies' split, never
the probe's) and adds their KL over every non-padding position (no loss trains them), so the teacher's behaviour on
ordinary text is kept too.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch
from accelerate.utils import extract_model_from_parallel

from continual.options import Options, option
from continual.training import IGNORE, CompletionCollator, tokenize_completions
from strategies.base import TOKEN_OUTPUTS, Strategy


@dataclass
class DistillOptions(Options):
    weight: float = option(1.0, "weight of the KL term", low=0)
    temperature: float = option(2.0, "softmax temperature of teacher and student (LwF: 2)", low=0, low_open=True)
    teacher: str = option("previous", "previous (the model before the stage) or original (before any stage)",
                          choices=("previous", "original"))
    general_batch: int = option(0, "general-text passages per step for the KL (0 = none)", low=0)
    positions: str = option("prompt", "positions distilled: prompt (those predicting a prompt token, LwF-like; the "
                            "answer's are left to the task loss) or all (every non-padding position)",
                            choices=("prompt", "all"))


def token_kl(teacher_logits, student_logits, mask, temperature: float = 1.0) -> torch.Tensor:
    """Mean over masked positions of KL(teacher || student), scaled by temperature^2."""
    t = (teacher_logits.float() / temperature).log_softmax(-1)
    s = (student_logits.float() / temperature).log_softmax(-1)
    per_token = (t.exp() * (t - s)).sum(-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1) * temperature ** 2


def distilled_positions(inputs: dict, positions: str = "prompt") -> torch.Tensor:
    """The mask of positions the KL averages over. ``all``: attention_mask. ``prompt``: position t where token t+1
    is a prompt token (attention 1, label -100), so no position whose next-token distribution the task's loss
    trains (label != -100 at t+1), nor the last one, is distilled."""
    mask = inputs["attention_mask"]
    if positions == "all":
        return mask
    labels = inputs["labels"]
    prompt_next = torch.zeros_like(mask)
    prompt_next[:, :-1] = ((labels[:, 1:] == IGNORE) & (mask[:, 1:] == 1)).to(mask.dtype)
    return mask * prompt_next


def frozen_copy(model):
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class Distill(Strategy):
    name = "distill"
    Config = DistillOptions
    needs = frozenset({TOKEN_OUTPUTS})  # the KL compares the student's logits of each training sequence

    def __init__(self, config=None):
        super().__init__(config)
        self.teacher = None
        self.general = None
        self.rng = None

    def setup(self, model):
        if self.config.teacher == "original":
            self.teacher = frozen_copy(model)
        return model

    def before_stage(self, model, ctx):
        if self.config.teacher == "previous":
            self.teacher = None
            self.teacher = frozen_copy(model)
        self.teacher.to(next(model.parameters()).device)
        if self.config.general_batch and self.general is None:
            from continual.probes.general_text import general_examples
            data = general_examples(ctx.general_source, 500, seed=ctx.seed)
            self.general = tokenize_completions(data, ctx.tokenizer, ctx.max_length)
            self.collate = CompletionCollator(ctx.tokenizer.pad_token_id)
        self.rng = random.Random(f"distill:{ctx.seed}:{ctx.index}")

    def loss_terms(self, model, inputs, outputs):
        if self.teacher is None or "input_ids" not in inputs:
            return {}
        mask = inputs["attention_mask"]
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=inputs["input_ids"], attention_mask=mask).logits
        kept = distilled_positions(inputs, self.config.positions)
        terms = {"distill_kl": self.config.weight * token_kl(teacher_logits, outputs.logits, kept,
                                                             self.config.temperature)}
        if self.general is not None:
            rows = [self.general[self.rng.randrange(len(self.general))] for _ in range(self.config.general_batch)]
            batch = {k: v.to(mask.device) for k, v in self.collate(rows).items() if k != "labels"}
            with torch.no_grad():
                t = self.teacher(**batch).logits
            # through the unwrapped model: a second forward of the DDP wrapper in one step would break its gradient
            # sync, while this one's gradients join the same backward and are all-reduced with the rest
            s = extract_model_from_parallel(model)(**batch).logits
            terms["distill_general_kl"] = self.config.weight * token_kl(t, s, batch["attention_mask"],
                                                                        self.config.temperature)
        return terms
