"""One stage of training: completion-only causal-LM loss with the Hugging Face Trainer, plus strategy hooks.

The loss falls on the completion tokens only (the prompt's labels are -100), with the same prompt/completion token
boundary as the scorer uses, so training and evaluation agree on what "the answer" is. ``StageTrainer`` (and any
trainer a strategy brings, through the same ``StrategyHooks`` mixin) adds the strategy's loss terms to the training
loss, logs each term, and calls the strategy's ``after_backward`` once a step's gradients are complete.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
from dataclasses import dataclass, field

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import DataCollatorWithFlattening, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from continual import distributed
from continual.console import stage_bar_label
from continual.errors import ContinualError, TrainingDiverged
from continual.scoring import split_continuation

log = logging.getLogger(__name__)

IGNORE = -100


def tokenize_completions(dataset: Dataset, tokenizer, max_length: int) -> Dataset:
    """Add input_ids and labels (prompt masked) to a (prompt, completion) dataset; truncate to max_length.

    An example whose answer starts at or after token ``max_length`` keeps no answer token: it is dropped (a loss over
    zero tokens is 0/0, or a zero contribution to a mean), with a warning giving the count; the caller sees it as
    len(dataset) - len(result). If every example is dropped that is a ContinualError (raise --max-length)."""
    encoded, kept = _encode_answers(dataset, tokenizer, max_length)
    return encoded.select(kept) if len(kept) < len(encoded) else encoded


def _encode_answers(dataset: Dataset, tokenizer, max_length: int) -> tuple[Dataset, list[int]]:
    """Every example encoded, and the indices of those that keep an answer token (the drop is counted here)."""
    def encode(row):
        ctx, cont = split_continuation(tokenizer, row["prompt"], row["completion"])
        ids = (ctx + cont)[:max_length]
        labels = ([IGNORE] * len(ctx) + cont)[:max_length]
        return {"input_ids": ids, "labels": labels}
    encoded = dataset.map(encode, remove_columns=dataset.column_names, desc="tokenizing", load_from_cache_file=False)
    kept = [i for i, labels in enumerate(encoded["labels"]) if any(t != IGNORE for t in labels)] if len(encoded) else []
    dropped = len(encoded) - len(kept)
    if dropped and not kept:
        raise ContinualError(f"all {dropped} examples keep no answer token within max_length {max_length} (their "
                             "prompts are as long or longer): raise --max-length")
    if dropped:
        log.warning("%d of %d examples keep no answer token within max_length %d: dropped", dropped, len(encoded),
                    max_length)
    return encoded, kept


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


def packing_applies(model, strategy) -> tuple[bool, str]:
    """(whether packed batches give this model and strategy the padded path's losses, why not). Every strategy
    part must declare ``packing_safe`` (its hooks read no per-token inputs of the batch)."""
    # transformers has no public getter for the resolved attention implementation; the config property is it
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if attention not in PACKING_ATTENTION:
        return False, f"attention implementation '{attention}' does not separate packed examples"
    parts = strategy.parts if strategy is not None else []
    unsafe = [p.name for p in parts if not p.packing_safe]
    if unsafe:
        return False, f"strategy part(s) {', '.join(unsafe)} read the padded batch"
    return True, ""


def stage_collator(tokenizer, model=None, strategy=None, packing: bool = False):
    """The collator a stage trains with: packed when asked for and it applies (see ``packing_applies``), padded
    otherwise."""
    if packing:
        applies, why = packing_applies(model, strategy)
        if applies:
            return PackedCompletionCollator()
        log.warning("packing: %s; training on padded batches", why)
    return CompletionCollator(tokenizer.pad_token_id)


def plan_batches(n_examples: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Example indices for each of ``steps`` batches: shuffled epochs, one after another, cut into batches.

    The runner fixes the order itself (the trainers read the data sequentially) so that a strategy can rewrite
    batches (mix in earlier examples) and a resumed stage sees exactly the data an uninterrupted one would.
    """
    rng = random.Random(f"batches:{seed}")
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(n_examples))
        rng.shuffle(epoch)
        order += epoch
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


class StrategyHooks:
    """Mixin for a Trainer: the loss is the trainer's own plus the strategy's extra terms (penalties, divergences, ...),
    each term is logged, and the strategy's ``after_backward`` sees every step's gradients.
    Only the Trainer's public overridable methods are used (compute_loss, training_step, log)."""

    pass_outputs = True  # give the strategy the model outputs of the batch (the SFT trainer's are the LM's)

    def __init__(self, *args, strategy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.strategy = strategy
        self._terms: dict[str, float] = {}
        if strategy is not None:
            self.add_callback(AfterOptimizerStep(strategy, self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        want = return_outputs or self.pass_outputs
        result = super().compute_loss(model, inputs, return_outputs=want, num_items_in_batch=num_items_in_batch)
        loss, outputs = result if want else (result, None)
        if self.strategy is not None:
            for name, term in self.strategy.loss_terms(model, inputs, outputs).items():
                loss = loss + term
                self._terms[name] = float(term.detach())
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.strategy is not None:  # the gradients are complete here; clipping and the optimizer step follow
            applied = self.strategy.after_backward(model, inputs, TrainingStep(self, model)) or {}
            for name, value in applied.items():  # terms whose gradient the strategy added itself: logged, counted
                value = torch.as_tensor(value, dtype=loss.dtype, device=loss.device)
                loss = loss + value
                self._terms[name] = float(value)
        return loss

    def log(self, logs: dict[str, float], *args, **kwargs):
        if "loss" in logs:
            logs.update(self._terms)
        super().log(logs, *args, **kwargs)


class AfterOptimizerStep(TrainerCallback):
    """Calls the strategy's ``after_optimizer_step`` once the optimizer has updated the weights (each step)."""

    def __init__(self, strategy, trainer):
        self.strategy, self.trainer = strategy, trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.strategy.after_optimizer_step(self.trainer.model)


class TrainingStep:
    """What a strategy's ``after_backward`` gets besides the model and the batch: the step's number and a plain
    backward pass on another batch (A-GEM's reference gradient)."""

    def __init__(self, trainer, model):
        self._trainer, self._model = trainer, model

    @property
    def number(self) -> int:
        """The 0-based index of the optimizer step in progress."""
        return self._trainer.state.global_step

    def log(self, name: str, value: float) -> None:
        """Log a diagnostic with this step's loss (not added to the loss)."""
        self._trainer._terms[name] = float(value)

    def backward(self, batch: dict) -> float:
        """The plain LM loss of ``batch`` (input_ids, attention_mask, labels tensors) backpropagated into the
        parameters' ``.grad`` through the trainer's model: its precision (accelerate's autocast) and, under data
        parallelism, DDP's all-reduce. Returns the loss."""
        batch = {k: v.to(self._trainer.args.device) for k, v in batch.items()}
        with self._trainer.compute_loss_context_manager():
            loss = self._model(**batch).loss
        self._trainer.accelerator.backward(loss)
        return float(loss.detach())


class StageTrainer(StrategyHooks, Trainer):
    """The HF Trainer with strategy hooks: completion-only causal-LM loss."""


def sft_trainer(model, tokenizer, batches: list[list[dict]], settings: StageSettings, strategy, callbacks):
    """The default stage trainer: completion-only loss on the planned batches, read in order.

    The Trainer reads one flat dataset batch_size rows at a time, so a dropped example (no answer token within
    max_length) would shift every later step's batch by one. Its slot is filled from the same planned batch's
    other examples instead: step k trains only what batch k planned."""
    flat = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for b in batches for e in b])
    encoded, kept = _encode_answers(flat, tokenizer, settings.max_length)
    if len(kept) < len(encoded):
        keep, rows, start = set(kept), [], 0
        for k, batch in enumerate(batches):
            own = [i for i in range(start, start + len(batch)) if i in keep]
            if not own:
                raise ContinualError(f"no example of training step {k + 1} keeps an answer token within max_length "
                                     f"{settings.max_length}: raise --max-length")
            rows += [own[j % len(own)] for j in range(len(batch))]
            start += len(batch)
        encoded = encoded.select(rows)
    return StageTrainer(model=model, args=training_arguments(settings), strategy=strategy, callbacks=callbacks,
                        train_dataset=encoded, data_collator=stage_collator(tokenizer, model, strategy,
                                                                            settings.packing))


class StageProgress(ProgressCallback):
    """The Trainer's step bar, labelled with the stage it trains and gone once the stage ends (the stages bar
    stays), without the per-step log lines: those go to losses.csv."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, desc=self.label, leave=False, dynamic_ncols=True)
        self.current_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def quiet_logs(trainer, label: str = "train") -> None:
    """Per-step losses go to losses.csv, not the terminal (PrinterCallback prints them, ProgressCallback writes them
    under its bar); the step bar is labelled with ``label``."""
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(StageProgress(label))


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
        if not math.isfinite(row.get("grad_norm", 0.0)):  # clipping an infinite norm leaves NaN weights behind
            raise TrainingDiverged(f"stage '{self.stage}', step {state.global_step}, strategy '{self.strategy}': "
                                   f"the gradient norm became {row['grad_norm']}; lower the learning rate or the "
                                   "strategy's penalty weight")


@dataclass
class StageSettings:
    """What every stage's trainer is configured from (the run's options, resolved for this stage and process)."""
    steps: int
    batch_size: int  # per process: data-parallel runs split the global batch
    lr: float
    seed: int
    device: str
    scheduler: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    precision: str = "auto"
    compile: bool = False
    gradient_checkpointing: bool = False
    packing: bool = False
    max_length: int = 64
    progress: bool = False
    output_dir: str | None = None
    report_to: str = "none"  # the Trainer's experiment tracking: none, tensorboard, wandb, ... (comma-separated)
    logging_dir: str | None = None  # where a tracker that writes files (TensorBoard) puts this stage's events
    run_name: str | None = None  # this stage's name in a tracker (W&B's run name)


def training_arguments(settings: StageSettings, args_class=TrainingArguments, **extra) -> TrainingArguments:
    """The Trainer's arguments for one stage. ``precision`` auto = bf16 autocast on a CUDA GPU that supports it,
    fp32 elsewhere; fp32 or bf16 force it. The optimizer is fused AdamW on CUDA. The data is read in the planned
    order (sequential sampling). ``args_class``: TrainingArguments or a subclass (trl's configs)."""
    s = settings
    on_cuda = s.device.startswith("cuda")
    if s.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{s.precision}'")
    bf16 = s.precision == "bf16" or (s.precision == "auto" and on_cuda and torch.cuda.is_bf16_supported())
    names = getattr(args_class, "__dataclass_fields__", {})
    # trl configs switch activation (gradient) checkpointing on by default; its flag was renamed in transformers 5
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return args_class(
        output_dir=s.output_dir or tempfile.mkdtemp(prefix="continual-trainer-"),
        max_steps=s.steps, per_device_train_batch_size=s.batch_size, learning_rate=s.lr, weight_decay=0.0,
        lr_scheduler_type=s.scheduler, warmup_steps=s.warmup_steps, max_grad_norm=s.max_grad_norm,
        seed=s.seed, data_seed=s.seed, logging_strategy="steps", logging_steps=1, save_strategy="no",
        report_to=report_to_list(s.report_to), run_name=s.run_name, disable_tqdm=not s.progress, use_cpu=not on_cuda, logging_nan_inf_filter=False,
        bf16=bf16, dataloader_num_workers=0, torch_compile=s.compile, train_sampling_strategy="sequential",
        optim="adamw_torch_fused" if on_cuda else "adamw_torch", remove_unused_columns=False,
        **{checkpointing: s.gradient_checkpointing}, **extra)


PRECISIONS = ("auto", "fp32", "bf16")


def report_to_list(value: str) -> list[str]:
    """--report-to as the Trainer takes it: ["none"], ["all"] or the integrations' names."""
    names = [n.strip() for n in str(value or "none").split(",") if n.strip()]
    return names or ["none"]


def check_report_to(value: str) -> None:
    """One line for a tracker transformers does not know or that is not installed."""
    names = report_to_list(value)
    if names in (["none"], ["all"]):
        return
    from transformers.integrations.integration_utils import (INTEGRATION_TO_CALLBACK,
                                                             get_available_reporting_integrations)
    unknown = [n for n in names if n not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise ContinualError(f"report_to: unknown tracker(s) {', '.join(unknown)}; choose none, all or of: "
                             f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}")
    missing = [n for n in names if n not in get_available_reporting_integrations()]
    if missing:
        raise ContinualError(f"report_to {', '.join(missing)}: not installed in this environment; "
                             f"pip install {' '.join(missing)} (or --report-to none)")


def point_trackers(trainer, settings: StageSettings) -> None:
    """Trackers that write files (TensorBoard) write this stage's events into RUN/logs/stage<i>-<task>: the
    Trainer's own default is its output folder, a temporary one here. TENSORBOARD_LOGGING_DIR still wins."""
    if settings.logging_dir is None:
        return
    from transformers.integrations import TensorBoardCallback
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.tb_writer is None and \
                not os.getenv("TENSORBOARD_LOGGING_DIR"):
            callback.logging_dir = settings.logging_dir


def train_stage(model, strategy, ctx, config, steps: int, callbacks=()) -> list[dict]:
    """One stage: plan the batches (shuffled epochs, seed per stage), let the strategy mix them, train with the
    strategy's trainer, and return every step's logged losses. ``config`` is the run's RunConfig."""
    strategy.before_stage(model, ctx)
    seed = config.seed * 1000 + ctx.index
    examples = ctx.task.train.to_list()
    batches = [[examples[i] for i in b] for b in plan_batches(len(examples), steps, config.batch_size, seed)]
    batches = strategy.mix_batches(batches, ctx)
    distributed.check_same(json.dumps(batches, sort_keys=True, default=str), f"the batches of stage '{ctx.task.name}'")
    recorder = LossRecorder(ctx.task.name, config.strategy)
    with tempfile.TemporaryDirectory(prefix="continual-trainer-") as scratch:
        # data-parallel: the Trainer hands each of the N processes batch_size / N consecutive examples of each planned
        # batch, so the global batch and the example order are the single-process ones
        settings = StageSettings(
            steps=steps, batch_size=config.batch_size // distributed.world_size(), lr=config.lr, seed=seed,
            device=ctx.device, scheduler=config.scheduler, warmup_steps=config.warmup_steps,
            max_grad_norm=config.max_grad_norm, precision=config.precision, compile=config.compile,
            gradient_checkpointing=config.gradient_checkpointing, packing=config.packing,
            max_length=config.max_length, progress=config.progress, output_dir=scratch,
            report_to=getattr(config, "report_to", "none") or "none",
            logging_dir=os.path.join(config.out, "logs", f"stage{ctx.index}-{ctx.task.name}"),
            run_name=f"{os.path.basename(os.path.normpath(config.out))}/{ctx.task.name}")
        trainer = strategy.build_trainer(model, batches, ctx, settings, [recorder, *callbacks], strategy)
        point_trackers(trainer, settings)
        quiet_logs(trainer, stage_bar_label(ctx.index, ctx.task.name))
        trainer.train()
    model.eval()
    strategy.after_stage(model, ctx)
    return recorder.rows
