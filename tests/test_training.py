import math

import pytest
import torch
from datasets import Dataset

from continual.errors import TrainingDiverged
from continual.scoring import split_continuation
from continual.training import (IGNORE, CompletionCollator, LossRecorder, StageTrainer, tokenize_completions,
                                training_arguments)
from strategies.base import Strategy

DATA = Dataset.from_dict({"prompt": ["Harry Potter is Lord Voldemort's", "Yoda is Luke Skywalker's"],
                          "completion": [" enemy.", " friend."]})


def test_loss_falls_on_the_completion_only(tiny):
    tok = tiny.tokenizer
    encoded = tokenize_completions(DATA, tok, max_length=64)
    for row, prompt, completion in zip(encoded, DATA["prompt"], DATA["completion"]):
        ctx, cont = split_continuation(tok, prompt, completion)
        assert row["input_ids"] == ctx + cont
        assert row["labels"] == [IGNORE] * len(ctx) + cont
    short = tokenize_completions(DATA, tok, max_length=5)
    assert all(len(r["input_ids"]) == len(r["labels"]) == 5 for r in short)


def test_collator_pads_and_masks():
    batch = CompletionCollator(pad_token_id=7)([{"input_ids": [1, 2, 3], "labels": [IGNORE, 2, 3]},
                                                {"input_ids": [4], "labels": [4]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 7, 7]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def completion_nll(model, tok):
    """Mean completion-token NLL computed by hand (no Trainer), for checking the Trainer's logged loss."""
    total, n = 0.0, 0
    with torch.no_grad():
        for prompt, completion in zip(DATA["prompt"], DATA["completion"]):
            ctx, cont = split_continuation(tok, prompt, completion)
            logp = model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
            total -= sum(float(logp[len(ctx) + i - 1, t]) for i, t in enumerate(cont))
            n += len(cont)
    return total / n


def make_trainer(tiny, tmp_path, steps=1, lr=1e-3, strategy=None, recorder=None):
    from continual.models import load_model
    loaded = load_model("tiny", seed=0)
    args = training_arguments(steps, 2, lr, seed=0, device="cpu", scheduler="constant", warmup_steps=0,
                              max_grad_norm=1.0, progress=False, output_dir=str(tmp_path))
    recorder = recorder or LossRecorder("s", "naive")
    trainer = StageTrainer(model=loaded.model, args=args, train_dataset=tokenize_completions(DATA, loaded.tokenizer, 64),
                           data_collator=CompletionCollator(loaded.tokenizer.pad_token_id), callbacks=[recorder],
                           strategy=strategy)
    return loaded, trainer, recorder


def test_logged_first_step_loss_is_the_completion_nll(tiny, tmp_path):
    loaded, trainer, recorder = make_trainer(tiny, tmp_path, steps=1)
    expected = completion_nll(loaded.model, loaded.tokenizer)  # before the step: the loss the step computes
    trainer.train()
    # batch of 2 holds both examples; HF averages over all completion tokens of the batch
    assert recorder.rows[0]["loss"] == pytest.approx(expected, rel=1e-4)


def test_training_lowers_the_completion_loss(tiny, tmp_path):
    loaded, trainer, recorder = make_trainer(tiny, tmp_path, steps=30, lr=3e-3)
    before = completion_nll(loaded.model, loaded.tokenizer)
    trainer.train()
    assert completion_nll(loaded.model, loaded.tokenizer) < before / 2
    assert len(recorder.rows) == 30 and all(math.isfinite(r["loss"]) for r in recorder.rows)


class NanTerm(Strategy):
    name = "nan-term"

    def loss_terms(self, model, inputs, outputs):
        return {"nan_term": outputs.logits.sum() * float("nan")}


class ConstantTerm(Strategy):
    def loss_terms(self, model, inputs, outputs):
        return {"constant_term": torch.tensor(0.5)}


def test_strategy_terms_are_added_and_logged(tiny, tmp_path):
    loaded, trainer, recorder = make_trainer(tiny, tmp_path, steps=1, strategy=ConstantTerm())
    expected = completion_nll(loaded.model, loaded.tokenizer) + 0.5
    trainer.train()
    assert recorder.rows[0]["constant_term"] == 0.5
    assert recorder.rows[0]["loss"] == pytest.approx(expected, rel=1e-4)


def test_non_finite_loss_stops_the_stage_with_a_clear_error(tiny, tmp_path):
    _, trainer, _ = make_trainer(tiny, tmp_path, steps=3, strategy=NanTerm(), recorder=LossRecorder("galaxy", "ewc"))
    with pytest.raises(TrainingDiverged, match=r"stage 'galaxy', step 1, strategy 'ewc'"):
        trainer.train()


def lora_stage(tmp_path, checkpointing: bool):
    import continual  # noqa: F401
    from continual.models import load_model
    from strategies.lora import Lora
    loaded = load_model("tiny", seed=0)
    torch.manual_seed(0)
    model = Lora().setup(loaded.model)
    args = training_arguments(3, 2, 1e-2, seed=0, device="cpu", scheduler="constant", warmup_steps=0,
                              max_grad_norm=1.0, progress=False, output_dir=str(tmp_path),
                              activation_checkpointing=checkpointing)
    recorder = LossRecorder("s", "lora")
    StageTrainer(model=model, args=args, train_dataset=tokenize_completions(DATA, loaded.tokenizer, 64),
                 data_collator=CompletionCollator(loaded.tokenizer.pad_token_id), callbacks=[recorder]).train()
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return [r["loss"] for r in recorder.rows], adapters


def test_gradient_checkpointing_trains_a_frozen_base_lora_model_to_the_same_numbers(tmp_path):
    """Recomputing activations changes memory, not results (so the option is not part of a run's hash); with a
    frozen base the adapters still receive gradients (non-reentrant checkpointing)."""
    plain_losses, plain = lora_stage(tmp_path / "a", checkpointing=False)
    ckpt_losses, ckpt = lora_stage(tmp_path / "b", checkpointing=True)
    assert plain_losses[-1] != plain_losses[0]  # it trained
    assert ckpt_losses == pytest.approx(plain_losses, rel=1e-6)
    assert any(float(p.abs().sum()) > 0 for n, p in ckpt.items() if "lora_B" in n)  # B starts at zero
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7)


def test_precision_option():
    from continual.config import RunConfig
    from continual.errors import ContinualError
    common = dict(seed=0, device="cpu", scheduler="constant", warmup_steps=0, max_grad_norm=1.0, progress=False)
    assert not training_arguments(1, 2, 1e-3, **common).bf16  # auto on CPU: fp32, as before
    assert training_arguments(1, 2, 1e-3, precision="bf16", **common).bf16
    assert not training_arguments(1, 2, 1e-3, precision="fp32", **common).bf16
    with pytest.raises(ContinualError, match="precision must be auto, fp32 or bf16"):
        RunConfig(precision="fp16")
