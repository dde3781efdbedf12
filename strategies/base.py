"""The hook interface every strategy implements (after Avalanche's plugins), and what a stage is.

Per run: ``check_stream(stream)`` may refuse a stream it cannot train, ``stage_plan(stream, steps)`` says what each
stage trains (one task each, or joint's pool); ``setup(model)``
runs once on the base model (may wrap it, e.g. LoRA). Per stage i:

    before_stage(model, ctx) -> mix_batches(batches, ctx) -> build_trainer(...) -> training, where every step adds
    loss_terms(model, inputs, outputs) to the loss and calls after_backward(model, inputs, step) once the step's
    gradients are complete (before clipping and the optimizer step) and after_optimizer_step(model) once the
    weights moved -> after_stage(model, ctx)

Evaluation of task j runs inside ``eval_model(model, j)`` (per-task adapters swap there). ``state_dict`` /
``load_state_dict`` carry what a resumed run needs (Fisher, buffers, adapters made so far); ``load_state_dict``
runs on the freshly set-up model before the checkpoint's weights are loaded into it, so it must recreate any
structure (adapters) those weights need.

What a strategy declares decides how it combines with others (``+``) and what the runner does with it; no name is
special anywhere else:

    alone         why it combines with nothing (naive: the absence of a strategy; joint: a reference)
    reference     a reference point rather than a continual strategy (tables list it last)
    claims        run resources only one part may hold: MODEL_WRAPPER (adapters), TRAINER (its own trainer)
    needs         what its hooks need of the run (TOKEN_OUTPUTS: the LM outputs of every training sequence)
    removes       what it takes away from the run (DPO's trainer gives no TOKEN_OUTPUTS; per-task adapters break
                  ONE_ADAPTER; every adapter scheme removes BASE_WEIGHTS)
    packing_safe  its hooks read no per-token inputs of a batch, so padding-free packed batches are safe

Each strategy has one options dataclass (trl-style: the config is the documentation); ``--strategy-option
name.field=value`` sets its fields.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch

from continual.options import NoOptions

# run resources a part may claim (at most one part each)
MODEL_WRAPPER = "the model's wrapping (adapters)"
TRAINER = "the stage's trainer"
# capabilities a run has unless a part removes them
TOKEN_OUTPUTS = "the language-model outputs of every training sequence"
ONE_ADAPTER = "at most one LoRA adapter, named 'default'"
BASE_WEIGHTS = "training that changes the model's own weights (no adapter)"
RUN_CAPABILITIES = frozenset({TOKEN_OUTPUTS, ONE_ADAPTER, BASE_WEIGHTS})


@dataclass
class StageContext:
    index: int  # 0-based stage number
    task: Any  # continual.streams.Task being trained
    stream: Any  # the whole continual.streams.Stream
    tokenizer: Any
    device: str
    seed: int  # the run's seed
    batch_size: int
    general_source: str  # where general English text comes from (continual.probes.general_text)
    max_length: int = 64  # the run's training length: strategies that tokenize (Fisher, general text) use it
    save: Any = None  # save(name, DataFrame): a file of the strategy's own under RUN/strategy/ (None: not kept)
    last: bool = False  # no stage follows: state built only for later stages (a Fisher, a memory) can be skipped


@dataclass
class Stage:
    name: str  # the row name in matrix.csv
    task: Any  # what is trained: a task of the stream, or several pooled (joint)
    steps: int
    seen: int  # index of the last stream task trained once this stage is done (the label space scored after it)


class Strategy:
    name = "base"
    Config: type = NoOptions
    default_lr = 1e-4  # used when the user gives no --lr
    alone: str | None = None
    reference = False
    claims: frozenset[str] = frozenset()
    needs: frozenset[str] = frozenset()
    removes: frozenset[str] = frozenset()
    packing_safe = False  # a user's hooks may read the padded batch: safe only when declared

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    @property
    def parts(self) -> list[Strategy]:
        """The strategies this one is made of: itself, or a composite's members."""
        return [self]

    def describe(self) -> dict:
        return asdict(self.config)

    def check_stream(self, stream) -> None:
        """Refuse, before the model loads, a stream this strategy cannot train (raise ContinualError)."""

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse, before the run writes anything, a model this strategy cannot train (raise ContinualError); by
        default the adapter strategies' target_modules must name layers of the model."""
        targets = getattr(self.config, "target_modules", None)
        if isinstance(targets, str):
            from strategies.lora import check_targets
            check_targets(model, targets, f"{self.name}.target_modules")

    def stage_plan(self, stream, steps: int) -> list[Stage]:
        """One stage per task of the stream, in its order."""
        return [Stage(t.name, t, steps, i) for i, t in enumerate(stream.tasks)]

    def setup(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def before_stage(self, model: torch.nn.Module, ctx: StageContext) -> None:
        pass

    def mix_batches(self, batches: list[list[dict]], ctx: StageContext) -> list[list[dict]]:
        """The stage's planned batches (lists of example dicts), one per optimizer step; may replace examples."""
        return batches

    def build_trainer(self, model, batches: list[list[dict]], ctx: StageContext, settings, callbacks: list,
                      hooks: Strategy):
        """The trainer of one stage, reading ``batches`` in order and calling ``hooks``' loss_terms and
        after_backward (``hooks`` is the whole strategy, a composite's too). Default: the completion-loss SFT
        trainer (continual.training.sft_trainer). A strategy with its own objective (DPO) overrides this and
        claims TRAINER."""
        from continual.training import sft_trainer
        return sft_trainer(model, ctx.tokenizer, batches, settings, hooks, callbacks)

    def loss_terms(self, model, inputs: dict, outputs) -> dict[str, torch.Tensor]:
        return {}

    def after_backward(self, model, inputs: dict, step) -> dict[str, torch.Tensor] | None:
        """The step's gradients are complete (all-reduced across processes), before clipping and the optimizer
        step: a strategy may change them here (gradient projection, closed-form penalty gradients). ``step``
        (continual.training.TrainingStep) gives the step's number and ``step.backward(batch)``, a plain backward
        pass on another batch. Returns the terms whose gradient the strategy added itself ({name: value}): they
        are added to the step's logged loss and logged by name, as loss_terms are."""

    def after_optimizer_step(self, model) -> None:
        """The optimizer has just updated the weights (every step): e.g. project them back onto a constraint."""

    def after_stage(self, model: torch.nn.Module, ctx: StageContext) -> None:
        pass

    @contextmanager
    def eval_model(self, model: torch.nn.Module, task_index: int):
        yield model

    def probe_model_note(self) -> str:
        return "the model after the latest stage"

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, model: torch.nn.Module) -> None:
        pass


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
