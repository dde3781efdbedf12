"""One stage of training: completion-only causal-LM loss with the Hugging Face Trainer, plus strategy hooks.

The loss falls on the completion tokens only (the prompt's labels are -100), with the same prompt/completion token
boundary as the scorer uses, so training and evaluation agree on what "the answer" is. ``StageTrainer`` (and the DPO
trainer, for DPO stages) adds the strategy's loss terms to the training loss and logs each term.
"""

from __future__ import annotations

import math
import random
import tempfile
import warnings
from dataclasses import dataclass, field

import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import DataCollatorWithFlattening, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from continual.errors import TrainingDiverged
from continual.scoring import split_continuation

IGNORE = -100


def tokenize_completions(dataset: Dataset, tokenizer, max_length: int) -> Dataset:
    """Add input_ids and labels (prompt masked) to a (prompt, completion) dataset; truncate to max_length."""
    def encode(row):
        ctx, cont = split_continuation(tokenizer, row["prompt"], row["completion"])
        ids = (ctx + cont)[:max_length]
        labels = ([IGNORE] * len(ctx) + cont)[:max_length]
        return {"input_ids": ids, "labels": labels}
    return dataset.map(encode, remove_columns=dataset.column_names, desc="tokenizing", load_from_cache_file=False)


@dataclass
class CompletionCollator:
    """Right-pads input_ids (pad id), labels (-100) and builds the attention mask."""
    pad_token_id: int

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class PackedCompletionCollator:
    """Padding-free batches: a step's examples concatenated into one row with positions restarting at 0 for each
    (transformers' DataCollatorWithFlattening) and no attention mask, so no token is spent on padding.

    transformers 5 turns such position_ids into a block-diagonal causal mask for the sdpa, eager and flex attention
    implementations and into variable-length kernels for flash attention, but only when the forward pass keeps no
    key/value cache: hence ``use_cache=False`` in the batch. Every example's first label is -100 (its prompt), so
    no loss crosses an example boundary, and the loss (summed over completion tokens, divided by their number) is
    the padded batch's within float noise.
    """
    flatten: DataCollatorWithFlattening = field(default_factory=lambda: DataCollatorWithFlattening(return_tensors="pt"))

    def __call__(self, rows: list[dict]) -> dict:
        return {**self.flatten([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]),
                "use_cache": False}


PACKING_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")
# built-in strategies whose hooks read no per-token inputs of the batch (only parameters, or whole examples before
# collation); distillation compares teacher and student over the padded batch's attention mask, so it trains padded
PACKING_SAFE = {"naive", "lora", "lora-isolation", "ewc", "replay", "joint"}


def packing_applies(model, strategy) -> tuple[bool, str]:
    """(whether packed batches give this model and strategy the padded path's losses, why not)."""
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if attention not in PACKING_ATTENTION:
        return False, f"attention implementation '{attention}' does not separate packed examples"
    parts = strategy.parts if strategy is not None else []
    unsafe = [p.name for p in parts if not getattr(p, "packing_safe", p.name in PACKING_SAFE)]
    if unsafe:
        return False, f"strategy part(s) {', '.join(unsafe)} read the padded batch"
    return True, ""


def stage_collator(tokenizer, model=None, strategy=None, packing: bool = False):
    """The collator a stage trains with: packed when asked for and it applies (see ``packing_applies``), padded
    otherwise. A strategy class may declare ``packing_safe = True`` when its hooks read no per-token inputs."""
    if packing:
        applies, why = packing_applies(model, strategy)
        if applies:
            return PackedCompletionCollator()
        warnings.warn(f"packing: {why}; training on padded batches", stacklevel=2)
    return CompletionCollator(tokenizer.pad_token_id)


def plan_batches(n_examples: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Example indices for each of ``steps`` batches: shuffled epochs, one after another, cut into batches.

    The runner fixes the order itself (the trainers read the data sequentially) so that a strategy can rewrite
    batches (replay) and a resumed stage sees exactly the data an uninterrupted one would.
    """
    rng = random.Random(f"batches:{seed}")
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(n_examples))
        rng.shuffle(epoch)
        order += epoch
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


class StrategyHooks:
    """Mixin for a Trainer: the loss is the trainer's own plus the strategy's extra terms (EWC penalty,
    distillation, ...), each term is logged, and the data is read in the planned order."""

    pass_outputs = True  # give the strategy the model outputs of the batch (the SFT trainer's are the LM's)

    def __init__(self, *args, strategy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.strategy = strategy
        self._terms: dict[str, float] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        want = return_outputs or self.pass_outputs
        result = super().compute_loss(model, inputs, return_outputs=want, num_items_in_batch=num_items_in_batch)
        loss, outputs = result if want else (result, None)
        if self.strategy is not None:
            for name, term in self.strategy.loss_terms(model, inputs, outputs).items():
                loss = loss + term
                self._terms[name] = float(term.detach())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs):
        if "loss" in logs:
            logs.update(self._terms)
        super().log(logs, *args, **kwargs)

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


class StageTrainer(StrategyHooks, Trainer):
    """The HF Trainer with strategy hooks: completion-only causal-LM loss."""


def dpo_trainer_class():
    from trl import DPOTrainer

    class StageDPOTrainer(StrategyHooks, DPOTrainer):
        """trl's DPOTrainer with the same strategy hooks (parameter-space terms such as EWC apply)."""
        pass_outputs = False

    return StageDPOTrainer


class QuietProgress(ProgressCallback):
    """The Trainer's step bar without its per-step log lines: those go to losses.csv."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def quiet_logs(trainer) -> None:
    """Per-step losses go to losses.csv, not the terminal (PrinterCallback prints them, ProgressCallback writes them
    under its bar)."""
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress)


class LossRecorder(TrainerCallback):
    """Keeps every logged step's loss and stops the stage at the first non-finite loss."""

    def __init__(self, stage: str, strategy: str):
        self.stage, self.strategy = stage, strategy
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        row = {"stage": self.stage, "step": state.global_step}
        row.update({k: float(v) for k, v in logs.items() if k not in ("epoch",) and isinstance(v, (int, float))})
        self.rows.append(row)
        if not math.isfinite(row["loss"]):
            raise TrainingDiverged(f"stage '{self.stage}', step {state.global_step}, strategy '{self.strategy}': "
                                   f"the loss became {row['loss']}; lower the learning rate or check the data")


def training_arguments(steps: int, batch_size: int, lr: float, seed: int, device: str, scheduler: str,
                       warmup_steps: int, max_grad_norm: float, progress: bool, output_dir: str | None = None,
                       args_class=TrainingArguments, precision: str = "auto", compile: bool = False,
                       **extra) -> TrainingArguments:
    """The Trainer's arguments for one stage. ``precision`` auto = bf16 autocast on a CUDA GPU that supports it,
    fp32 elsewhere; fp32 or bf16 force it. The optimizer is fused AdamW on CUDA. ``compile`` = torch.compile."""
    on_cuda = device.startswith("cuda")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    bf16 = precision == "bf16" or (precision == "auto" and on_cuda and torch.cuda.is_bf16_supported())
    return args_class(
        output_dir=output_dir or tempfile.mkdtemp(prefix="continual-trainer-"),
        max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr, weight_decay=0.0,
        lr_scheduler_type=scheduler, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm,
        seed=seed, data_seed=seed, logging_strategy="steps", logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=not progress, use_cpu=not on_cuda, logging_nan_inf_filter=False,
        bf16=bf16, dataloader_num_workers=0, torch_compile=compile,
        optim="adamw_torch_fused" if on_cuda else "adamw_torch", remove_unused_columns=False, **extra)


PRECISIONS = ("auto", "fp32", "bf16")
