"""DPO (Rafailov et al. 2023) stages with trl's DPOTrainer on (prompt, chosen, rejected) pairs built from each task.

The pairs come from the task itself: chosen is the training example's completion, which begins with one of the
task's candidate answers, and rejected the same completion with another candidate in its place (facts: " friend."
vs " enemy.", as in seed 001); with more than two candidates the wrong one is drawn per example from the seed.
Generation tasks and general text have no candidates and are refused with one line.

Chosen and rejected end where the completion does: trl's appended EOS is removed (the matrix scores the answer
without one, and SFT stages train it without one).

The reference model is the model as it was before the stage, passed explicitly: a frozen copy for a fully trained
model (trl would otherwise reload the stale original from disk), and for a LoRA model trl's frozen copy of the
current adapter ("ref"), removed again after the stage, as is trl's patch of the model's forward.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from datasets import Dataset

from continual.errors import ContinualError
from continual.options import Options, option
from continual.streams.task import answer_of
from continual.training import StrategyHooks, training_arguments
from strategies.base import ONE_ADAPTER, TOKEN_OUTPUTS, TRAINER, Strategy
from strategies.distill import frozen_copy


@dataclass
class DPOOptions(Options):
    beta: float = option(0.1, "DPO temperature beta (strength of the reference anchor)", low=0, low_open=True)
    loss_type: str = option("sigmoid", "trl DPO loss type (sigmoid, ipo, hinge, ...)")


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def rejected_completion(completion: str, answers: list[str], rng: random.Random, where: str) -> str:
    """The completion with its candidate answer replaced by another candidate (the rest of it kept)."""
    index = answer_of(completion, answers)
    if index is None:
        raise ContinualError(f"{where}: the completion {completion!r} begins with none of the candidate answers "
                             f"{answers}; DPO builds the rejected answer by swapping that candidate")
    chosen = answers[index]
    wrong = [a for a in answers if a != chosen]
    return (wrong[0] if len(wrong) == 1 else rng.choice(wrong)) + completion[len(chosen):]


def functional_dropout_off(model) -> list[tuple[object, str, float]]:
    """Zero the dropout rates that modules keep as plain floats and apply with nn.functional.dropout (OPT's
    layers and attention): trl's disable_dropout zeroes only nn.Dropout modules, and with these left on the
    policy's log-probs differ from the reference's from the first step (OPT's first loss 0.697, not ln 2).
    Returns what was changed, for restore_dropout."""
    changed = []
    for module in model.modules():
        for attr, value in vars(module).items():
            if "dropout" in attr and isinstance(value, float) and not isinstance(value, bool) and value > 0:
                changed.append((module, attr, value))
    for module, attr, _ in changed:
        setattr(module, attr, 0.0)
    return changed


def restore_dropout(changed) -> None:
    for module, attr, value in changed:
        setattr(module, attr, value)


def without_appended_eos(dataset: Dataset, eos_id: int | None) -> Dataset:
    """trl appends EOS to plain-text chosen and rejected answers; here both are scored as the completion alone
    (what SFT stages train and what the matrix scores), so the EOS trl added (its last token) is taken off again."""
    columns = ("chosen_ids", "rejected_ids")
    if eos_id is None or not set(columns) <= set(dataset.column_names):
        return dataset

    def strip(row):
        return {c: row[c][:-1] if len(row[c]) > 1 and row[c][-1] == eos_id else row[c] for c in columns}
    return dataset.map(strip, desc="DPO answers without EOS", load_from_cache_file=False)


def dpo_trainer_class():
    from trl import DPOTrainer

    class StageDPOTrainer(StrategyHooks, DPOTrainer):
        """trl's DPOTrainer with the strategy hooks (parameter-space terms such as EWC's apply)."""
        pass_outputs = False

    return StageDPOTrainer


class DPO(Strategy):
    name = "dpo"
    Config = DPOOptions
    default_lr = 5e-5
    claims = frozenset({TRAINER})
    removes = frozenset({TOKEN_OUTPUTS})  # trl's trainer computes its own per-sequence log-probs
    needs = frozenset({ONE_ADAPTER})  # trl copies the adapter named 'default' as the reference

    def check_stream(self, stream):
        free = [t.name for t in stream.tasks if not t.answers]
        if free:
            raise ContinualError(f"dpo needs candidate answers to build rejected ones, and task(s) {', '.join(free)} "
                                 f"of stream '{stream.name}' have none (generation tasks); pick choice tasks with "
                                 "--tasks or use another strategy")

    def pairs(self, batches: list[list[dict]], ctx) -> Dataset:
        """(prompt, chosen, rejected) for every planned example, in order; a replayed example is answered from its
        own task's candidates."""
        tasks = {t.name: t for t in ctx.stream.tasks} | {ctx.task.name: ctx.task}
        rows = []
        for k, example in enumerate(e for batch in batches for e in batch):
            name = example.get("task", ctx.task.name)  # replayed examples carry their task; general text None
            task = tasks.get(name) if name is not None else None
            if task is None or not task.answers:
                source = f"task '{name}'" if name is not None else "general text (replay.general_ratio)"
                raise ContinualError(f"{source} has no candidate answers, which DPO needs for its rejected "
                                     "answers; DPO trains choice tasks only (use another strategy)")
            rng = random.Random(f"dpo:{ctx.seed}:{ctx.index}:{k}")
            rows.append({"prompt": example["prompt"], "chosen": example["completion"],
                         "rejected": rejected_completion(example["completion"], task.answers, rng,
                                                         f"task '{task.name}'")})
        return Dataset.from_list(rows)

    def reference_model(self, model):
        """What DPOTrainer gets as ref_model: None for a PEFT model (trl copies the adapter), else a frozen copy."""
        return None if is_peft(model) else frozen_copy(model)

    def build_trainer(self, model, batches, ctx, settings, callbacks, hooks):
        from trl import DPOConfig
        data = self.pairs(batches, ctx)
        base = model.get_base_model() if is_peft(model) else model
        self._forward_patched = "forward" not in vars(base)  # trl sets an instance forward; we restore the class's
        args = training_arguments(settings, args_class=DPOConfig, beta=self.config.beta,
                                  loss_type=[self.config.loss_type], max_length=settings.max_length)
        self._dropout = functional_dropout_off(model)  # before the reference copy, which shares the rates
        trainer = dpo_trainer_class()(model=model, ref_model=self.reference_model(model), args=args,
                                      train_dataset=data, processing_class=ctx.tokenizer, strategy=hooks,
                                      callbacks=callbacks)
        trainer.train_dataset = without_appended_eos(trainer.train_dataset, ctx.tokenizer.eos_token_id)
        return trainer

    def after_stage(self, model, ctx):
        restore_dropout(getattr(self, "_dropout", []))  # other strategies' stages train as the model was built
        self._dropout = []
        if is_peft(model) and "ref" in model.peft_config:
            model.delete_adapter("ref")
        base = model.get_base_model() if is_peft(model) else model
        if getattr(self, "_forward_patched", False) and "forward" in vars(base):
            del base.forward  # trl's fused-LM-head forward: scoring and later stages use the model's own
        self._forward_patched = False
