import torch

from strategies.dpo import DPO
from strategies.lora import Lora
from strategies import make_strategy
from tests.conftest import StageRunner


def test_reference_is_a_frozen_copy_of_the_pre_stage_model(monkeypatch):
    runner = StageRunner(DPO(), steps=3, lr=1e-2)
    runner.stage(0)  # the reference of stage 1 must be the model after stage 0, not the original
    pre_stage = {n: p.detach().clone() for n, p in runner.model.named_parameters()}
    refs = []
    real = DPO.reference_model

    def keep(self, model):
        refs.append(real(self, model))
        return refs[-1]
    monkeypatch.setattr(DPO, "reference_model", keep)
    rows = runner.stage(1)
    ref = refs[0]
    assert ref is not runner.model
    assert all(not p.requires_grad for p in ref.parameters())
    for n, p in ref.named_parameters():
        assert torch.equal(p, pre_stage[n]), n  # frozen throughout the stage
    assert any(not torch.equal(p, pre_stage[n]) for n, p in runner.model.named_parameters())  # the policy moved
    assert len(rows) == 3 and all("rewards/margins" in r for r in rows)


def test_with_lora_the_reference_is_trls_frozen_copy_of_the_adapter(monkeypatch):
    runner = StageRunner(make_strategy("lora+dpo"), steps=3, lr=1e-2)
    runner.stage(0)
    pre_stage = {n: p.detach().clone() for n, p in runner.model.named_parameters() if ".default." in n}
    seen = {}
    real = DPO.after_stage

    def inspect(self, model, ctx):
        seen["ref"] = {n.replace(".ref.", ".default."): p.detach().clone()
                       for n, p in model.named_parameters() if ".ref." in n}
        seen["ref_trainable"] = any(p.requires_grad for n, p in model.named_parameters() if ".ref." in n)
        real(self, model, ctx)
    monkeypatch.setattr(DPO, "after_stage", inspect)
    runner.stage(1)
    assert seen["ref"].keys() == pre_stage.keys() and not seen["ref_trainable"]
    assert all(torch.equal(seen["ref"][n], pre_stage[n]) for n in pre_stage)
    assert "ref" not in runner.model.peft_config  # removed, so the next stage can make a fresh one
    assert isinstance(runner.strategy.parts[0], Lora)


def test_chosen_and_rejected_are_the_completions_without_an_eos():
    """trl appends EOS to plain-text answers; the pairs DPO trains end where the completion does, as SFT trains it
    and as the matrix scores it."""
    from continual.scoring import split_continuation
    from continual.training import StageSettings
    runner = StageRunner(DPO(), steps=2, lr=1e-2, batch_size=2)
    ctx = runner.context(0)
    examples = ctx.task.train.to_list()[:4]
    batches = [examples[:2], examples[2:]]
    settings = StageSettings(steps=2, batch_size=2, lr=1e-2, seed=0, device="cpu", max_length=64)
    trainer = runner.strategy.build_trainer(runner.model, batches, ctx, settings, [], runner.strategy)
    pairs = runner.strategy.pairs(batches, ctx)
    rows = list(trainer.train_dataset)
    assert len(rows) == 4
    eos = runner.tokenizer.eos_token_id
    for row, pair in zip(rows, pairs):
        for side in ("chosen", "rejected"):
            _, answer = split_continuation(runner.tokenizer, pair["prompt"], pair[side])
            assert row[f"{side}_ids"] == answer and row[f"{side}_ids"][-1] != eos
    runner.strategy.after_stage(runner.model, ctx)

