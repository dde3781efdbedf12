"""The registry: names, '+' combinations, options, user strategies; and every strategy through the CLI."""

import pytest

import continual
from continual.errors import ContinualError
from strategies import STRATEGIES, make_strategy, register
from strategies.base import Strategy
from strategies.composite import Composite


def test_every_listed_strategy_builds_with_its_defaults():
    for name in STRATEGIES:
        strategy = make_strategy(name)
        assert strategy.name == name and isinstance(strategy.describe(), dict)


def test_combinations_and_their_options():
    s = make_strategy("lora+replay", {"replay.ratio": "0.5", "lora.r": "4"})
    assert isinstance(s, Composite) and s.name == "lora+replay"
    assert s.parts[1].config.ratio == 0.5 and s.parts[0].config.r == 4
    assert s.default_lr == s.parts[0].default_lr  # LoRA's step size, not full fine-tuning's
    assert make_strategy("dpo+ewc").trainer == "dpo"


@pytest.mark.parametrize("spec,options,message", [
    ("magic", {}, "unknown strategy 'magic'"),
    ("naive+replay", {}, "naive is the absence of a strategy"),
    ("joint+ewc", {}, "joint is a reference"),
    ("lora+lora-isolation", {}, "do not combine"),
    ("dpo+distill", {}, "do not combine"),
    ("replay+replay", {}, "distinct strategy names"),
    ("replay", {"replay.ratoi": "0.5"}, "unknown option(s) replay.ratoi"),
    ("replay", {"ewc.lam": "1"}, "names no strategy of 'replay'"),
    ("replay", {"replay.ratio": "lots"}, "replay.ratio must be float"),
    ("replay", {"replay.ratio": "1.5"}, "must lie in [0, 1]"),
    ("ewc", {"ewc.general": "maybe"}, "ewc.general must be bool"),
    ("replay", {"replay.buffer_size": 2.5}, "replay.buffer_size must be int"),
    ("nosuch.module:Thing", {}, "cannot import strategy"),
])
def test_bad_strategy_specs_are_clear_errors(spec, options, message):
    with pytest.raises(ContinualError) as info:
        make_strategy(spec, options)
    assert message in str(info.value)


class Noisy(Strategy):
    """A user strategy: counts its hook calls."""
    name = "noisy"

    def __init__(self, config=None):
        super().__init__(config)
        self.calls = []

    def before_stage(self, model, ctx):
        self.calls.append(("before", ctx.index))


def test_user_strategies_register_or_import_without_editing_the_package(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "noisy", STRATEGIES.get("noisy", (Noisy, "")))
    register("noisy", Noisy)
    assert isinstance(make_strategy("noisy+replay").parts[0], Noisy)
    assert isinstance(make_strategy("tests.test_strategies:Noisy"), Noisy)
    with pytest.raises(ContinualError, match="not a subclass"):
        register("bad", dict)


def test_every_strategy_runs_from_one_command(tmp_path, capsys):
    from continual.cli import main
    out = tmp_path / "all"
    code = main(["run", "--stream", "facts", "--strategy", ",".join(STRATEGIES), "--model", "tiny", "--steps", "2",
                 "--camp-size", "2", "--probe-tokens", "100", "--kl-tokens", "20", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for name in STRATEGIES:
        summary = continual.load_result(out / name).summary
        assert summary["status"] == "completed" and summary["strategy"] == name
        assert f"/ {name} / tiny" in printed
    joint = continual.load_result(out / "joint")
    assert list(joint.matrix.index) == ["base", "joint"] and joint.summary["bwt"] is None
    assert len(joint.losses) == 2 * 3  # as many steps as all stages together
    isolation = continual.load_result(out / "lora-isolation").summary
    assert isolation["bwt"] == 0.0 and isolation["forgetting"] == 0.0  # by construction
