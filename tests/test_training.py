import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from continual.errors import TrainingDiverged
from continual.scoring import split_continuation
from continual.training import (IGNORE, CompletionCollator, LossRecorder, StageSettings, StageTrainer,
                                tokenize_completions, training_arguments)
from strategies.base import Strategy


def stage_arguments(steps, batch_size, lr, **settings):
    """The Trainer arguments of a stage with these settings (continual.training.StageSettings)."""
    return training_arguments(StageSettings(steps=steps, batch_size=batch_size, lr=lr, **settings))


DATA = Dataset.from_dict({"prompt": ["Harry Potter is Lord Voldemort's", "Yoda is Luke Skywalker's"],
                          "completion": [" enemy.", " friend."]})


def test_loss_falls_on_the_completion_only(tiny):
    tok = tiny.tokenizer
    encoded = tokenize_completions(DATA, tok, max_length=64)
    for row, prompt, completion in zip(encoded, DATA["prompt"], DATA["completion"]):
        ctx, cont = split_continuation(tok, prompt, completion)
        assert row["input_ids"] == ctx + cont
        assert row["labels"] == [IGNORE] * len(ctx) + cont
    short = tokenize_completions(DATA, tok, max_length=13)  # 16- and 12-token prompts: only the second keeps
    assert [len(r["input_ids"]) for r in short] == [13] and short[0]["labels"][-1] != IGNORE  # an answer token


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
    args = stage_arguments(steps, 2, lr, seed=0, device="cpu", scheduler="constant", warmup_steps=0,
                           max_grad_norm=1.0, progress=False, output_dir=str(tmp_path))
    recorder = recorder or LossRecorder("s", "naive")
    trainer = StageTrainer(model=loaded.model, args=args,
                           train_dataset=tokenize_completions(DATA, loaded.tokenizer, 64),
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
    args = stage_arguments(3, 2, 1e-2, seed=0, device="cpu", scheduler="constant", warmup_steps=0,
                           max_grad_norm=1.0, progress=False, output_dir=str(tmp_path),
                           gradient_checkpointing=checkpointing)
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
    assert not stage_arguments(1, 2, 1e-3, **common).bf16  # auto on CPU: fp32, as before
    assert stage_arguments(1, 2, 1e-3, precision="bf16", **common).bf16
    assert not stage_arguments(1, 2, 1e-3, precision="fp32", **common).bf16
    with pytest.raises(ContinualError, match="precision must be one of auto, fp32, bf16"):
        RunConfig(precision="fp16")


# ------------------------------------------------------------------------------------- packing, precision

MIXED = Dataset.from_dict({"prompt": ["Harry Potter is Lord Voldemort's", "Yoda is", "A", "The road goes on to the"],
                           "completion": [" enemy.", " Luke Skywalker's friend and teacher.", " b", " sea"]})


def test_packed_collator_concatenates_without_padding(tiny):
    from continual.training import PackedCompletionCollator
    rows = list(tokenize_completions(MIXED, tiny.tokenizer, 64))
    batch = PackedCompletionCollator()(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    assert batch["input_ids"][0].tolist() == [t for r in rows for t in r["input_ids"]]
    assert batch["position_ids"][0].tolist() == [p for n in lengths for p in range(n)]
    assert batch["labels"][0].tolist() == [t for r in rows for t in r["labels"]]  # prompts already start with -100
    assert batch["use_cache"] is False  # a cache would hide the packed layout from the mask builder


def test_packed_batch_gives_the_padded_loss_and_gradients():
    from continual.models import load_model
    from continual.training import PackedCompletionCollator
    loaded = load_model("tiny", seed=0)
    model, rows = loaded.model.train(), list(tokenize_completions(MIXED, loaded.tokenizer, 64))
    grads = []
    for collate in (CompletionCollator(loaded.tokenizer.pad_token_id), PackedCompletionCollator()):
        model.zero_grad()
        loss = model(**collate(rows)).loss
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    assert grads[1][0] == pytest.approx(grads[0][0], abs=1e-4)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("strategy, options", [("ewc", {"ewc.fisher_samples": 8}), ("lora+replay", {})])
def test_packed_stages_match_padded_stages(strategy, options):
    """Two stages through the runner's trainer: the same losses within float noise (fp32) with and without packing.
    Stage two carries the strategy's state (EWC penalty, replayed examples)."""
    import dataclasses

    import continual  # noqa: F401
    from strategies import make_strategy
    from tests.conftest import StageRunner
    losses = []
    for packing in (False, True):
        runner = StageRunner(make_strategy(strategy, options), steps=3, lr=1e-3)
        runner.config = dataclasses.replace(runner.config, packing=packing)
        losses.append([r["loss"] for r in runner.stage(0) + runner.stage(1)])
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-4)


def test_packing_falls_back_to_padding_where_it_would_change_results(tiny, caplog):
    import continual  # noqa: F401
    from continual.training import PackedCompletionCollator, packing_applies, stage_collator
    from strategies import make_strategy
    assert isinstance(stage_collator(tiny.tokenizer, tiny.model, make_strategy("lora+replay"), packing=True),
                      PackedCompletionCollator)
    assert isinstance(stage_collator(tiny.tokenizer, tiny.model, make_strategy("naive"), packing=False),
                      CompletionCollator)
    ok, why = packing_applies(tiny.model, make_strategy("replay+distill"))
    assert not ok and "distill" in why
    assert isinstance(stage_collator(tiny.tokenizer, tiny.model, make_strategy("distill"), packing=True),
                      CompletionCollator)
    assert "distill read the padded batch" in caplog.text

    class Unknown:
        config = type("C", (), {"_attn_implementation": "some_linear_attention"})()
    ok, why = packing_applies(Unknown(), make_strategy("naive"))
    assert not ok and "some_linear_attention" in why


def test_precision_and_optimizer_choice():
    common = dict(seed=0, device="cpu", scheduler="constant", warmup_steps=0, max_grad_norm=1.0, progress=False)
    fp32 = stage_arguments(1, 2, 1e-3, **common)
    assert not fp32.bf16 and fp32.optim == "adamw_torch" and not fp32.torch_compile  # CPU defaults unchanged
    bf16 = stage_arguments(1, 2, 1e-3, precision="bf16", compile=True, **common)
    assert bf16.bf16 and bf16.torch_compile
    with pytest.raises(ValueError, match="precision must be one of"):
        stage_arguments(1, 2, 1e-3, precision="fp8", **common)


def test_run_config_rejects_an_unknown_precision():
    from continual.config import RunConfig
    from continual.errors import ContinualError
    with pytest.raises(ContinualError, match="precision must be one of auto, fp32, bf16"):
        RunConfig(precision="half")


def test_bf16_autocast_loss_matches_fp32_loosely(tmp_path):
    """bf16 autocast (here on CPU) against fp32 on the same first batch: bf16 keeps 8 bits of mantissa, so the
    tolerance is 2% of the loss rather than fp32's 1e-4."""
    from continual.models import load_model
    first = []
    for precision in ("fp32", "bf16"):
        loaded = load_model("tiny", seed=0)
        args = stage_arguments(1, 2, 1e-3, seed=0, device="cpu", scheduler="constant", warmup_steps=0,
                               max_grad_norm=1.0, progress=False, output_dir=str(tmp_path / precision),
                               precision=precision)
        recorder = LossRecorder("s", "naive")
        StageTrainer(model=loaded.model, args=args, train_dataset=tokenize_completions(DATA, loaded.tokenizer, 64),
                     data_collator=CompletionCollator(loaded.tokenizer.pad_token_id), callbacks=[recorder]).train()
        first.append(recorder.rows[0]["loss"])
    assert first[1] == pytest.approx(first[0], rel=2e-2)
    assert first[1] != first[0]  # autocast did run in bf16


# ------------------------------------------------------------------------------------------------ tracking

TRACKED = dict(stream="facts", strategy="naive", model="tiny", steps=3, batch_size=4,
               stream_options={"facts.camp_size": 3}, probe="kl", probe_options={"kl.tokens": 50}, progress=False,
               plots=False, lr=1e-3)


def test_report_to_tensorboard_writes_each_stages_loss_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import continual
    from transformers import TrainerCallback

    class Steps(TrainerCallback):  # a public Trainer callback from the Python API
        def __init__(self):
            self.seen = []

        def on_step_end(self, args, state, control, **kwargs):
            self.seen.append(state.global_step)

    steps = Steps()
    result = continual.run(out=str(tmp_path / "run"), report_to="tensorboard", callbacks=[steps], **TRACKED)
    assert steps.seen == [1, 2, 3] * 3  # every step of the three stages
    logs = tmp_path / "run" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["stage0-hogwarts", "stage1-middle-earth", "stage2-galaxy"]
    for stage, folder in zip(["hogwarts", "middle-earth", "galaxy"], sorted(logs.iterdir())):
        assert list(folder.glob("events.out.tfevents.*"))
        events = EventAccumulator(str(folder))
        events.Reload()
        assert "train/loss" in events.Tags()["scalars"]
        scalars = events.Scalars("train/loss")
        recorded = result.losses[result.losses["stage"] == stage]
        assert [s.step for s in scalars] == list(recorded["step"])
        assert [s.value for s in scalars] == pytest.approx(list(recorded["loss"]), rel=1e-6)
    assert result.config["report_to"] == "tensorboard"


def test_report_to_is_not_part_of_the_runs_identity_and_is_checked():
    from continual.config import RunConfig
    from continual.errors import ContinualError
    base = RunConfig(model="tiny", out="x")
    assert base.report_to == "none" and training_arguments(
        StageSettings(steps=1, batch_size=1, lr=1e-3, seed=0, device="cpu")).report_to in ([], ["none"], "none")
    assert RunConfig(model="tiny", out="x", report_to="tensorboard").config_hash() == base.config_hash()
    with pytest.raises(ContinualError, match="unknown tracker.*nonsense"):
        RunConfig(model="tiny", out="x", report_to="nonsense").check()
