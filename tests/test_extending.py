"""A probe and a strategy defined here, each one class registered from this file, run end to end on ``tiny``: the
probe's columns reach probe.csv, summary.json, the comparison table and the report, the strategy's hooks (a loss
term and a gradient change after backward) act on training, and no file of the package changes."""

import math

import pytest
import torch

import continual
from continual.compare import compare_table
from continual.probes import PROBES, register_probe
from continual.probes.base import Column, Probe
from continual.report import write_report
from strategies import STRATEGIES, register
from strategies.base import Strategy

RUN = dict(stream="facts", model="tiny", steps=3, batch_size=4, seed=0, lr=1e-3, progress=False,
           stream_options={"facts.camp_size": 3}, probe="cloze,weight-drift")


class WeightDrift(Probe):
    """How far the weights moved from the base model's (L2)."""
    name = "weight-drift"

    def columns(self):
        return [Column("weight_drift", "L2 distance of the weights from the base model's", higher_is_better=False,
                       chance=0.0, primary=True, label="weight drift (L2)")]

    def calibrate(self, model):
        self.base = {n: p.detach().clone() for n, p in model.named_parameters()}
        return self.measure(model)

    def measure(self, model):
        total = sum(float(((p.detach() - self.base[n]) ** 2).sum()) for n, p in model.named_parameters())
        return {"weight_drift": math.sqrt(total)}


class FrozenEmbeddings(Strategy):
    """Full fine-tuning whose input embeddings never move: their gradient is zeroed after every backward. Logs a
    (zero) loss term."""
    name = "frozen-embeddings"
    packing_safe = True

    def loss_terms(self, model, inputs, outputs):
        return {"frozen_zero": 0.0 * outputs.logits.float().mean()}

    def after_backward(self, model, inputs, step):
        model.get_input_embeddings().weight.grad.zero_()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    saved = (dict(PROBES.entries), dict(STRATEGIES.entries))
    register_probe("weight-drift", WeightDrift)
    register("frozen-embeddings", FrozenEmbeddings)
    try:
        root = tmp_path_factory.mktemp("extending")
        return {name: continual.run(strategy=name, out=str(root / name), keep_checkpoint=True, **RUN)
                for name in ("naive", "frozen-embeddings")}
    finally:
        PROBES.entries, STRATEGIES.entries = saved


def test_the_probes_columns_reach_every_output(runs, tmp_path):
    result = runs["frozen-embeddings"]
    assert list(result.probe.columns) == ["after", "cloze", "cloze_norm", "retention", "weight_drift"]
    assert result.probe["weight_drift"].iloc[0] == 0.0 and (result.probe["weight_drift"].iloc[1:] > 0).all()
    on_disk = continual.load_result(result.path)
    assert on_disk.probe["weight_drift"].tolist() == pytest.approx(result.probe["weight_drift"].tolist())
    summary = on_disk.summary
    assert summary["probe"]["weight_drift"] == pytest.approx(result.probe["weight_drift"].iloc[-1])
    assert summary["probe_columns"]["weight_drift"]["probe"] == "weight-drift"
    assert summary["conventions"]["weight_drift"].startswith("L2 distance")
    assert on_disk.config["probe"] == "cloze,weight-drift"
    table = compare_table([r.path for r in runs.values()])
    assert "weight_drift" in table.columns and "weight_drift_ci95" in table.columns
    assert set(table["strategy"]) == {"base", "naive", "frozen-embeddings"}
    html = write_report([r.path for r in runs.values()], tmp_path / "report.html").read_text(encoding="utf-8")
    assert "weight_drift" in html and "frozen-embeddings" in html and "L2 distance of the weights" in html


def test_the_strategys_hooks_act_on_training(runs):
    from safetensors.torch import load_file

    from continual.models import load_model
    naive, frozen = runs["naive"].losses, runs["frozen-embeddings"].losses
    assert "frozen_zero" in frozen.columns and (frozen["frozen_zero"] == 0).all()
    # the first step sees the same batch and weights; grad_norm is taken after the hook, before clipping
    assert frozen["loss"].iloc[0] == pytest.approx(naive["loss"].iloc[0], rel=1e-6)
    assert frozen["grad_norm"].iloc[0] < naive["grad_norm"].iloc[0]
    base = load_model("tiny", seed=0).model.get_input_embeddings().weight
    saved = {k: load_file(runs[k].path / "checkpoint" / "model.safetensors") for k in runs}
    # tiny ties its embeddings to the LM head: the checkpoint keeps the shared tensor under one of the two names
    final = {k: w.get("model.embed_tokens.weight", w.get("lm_head.weight")) for k, w in saved.items()}
    assert torch.equal(final["frozen-embeddings"], base) and not torch.equal(final["naive"], base)


def test_registrations_ended_with_the_module(runs):
    assert "weight-drift" not in PROBES and "frozen-embeddings" not in STRATEGIES
