"""The registry: names, '+' combinations, options, user strategies; and every strategy through the CLI."""

import pytest

import continual
from continual.errors import ContinualError
from strategies import STRATEGIES, make_strategy, register, supported_combinations
from strategies.base import TRAINER
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
    assert TRAINER in make_strategy("dpo+ewc").claims
    assert "replay+dpo" in supported_combinations() and "dpo+distill" not in supported_combinations()


@pytest.mark.parametrize("spec,options,message", [
    ("magic", {}, "unknown strategy 'magic'"),
    ("naive+replay", {}, "naive is the absence of a strategy"),
    ("joint+ewc", {}, "joint is a reference"),
    ("lora+lora-isolation", {}, "lora and lora-isolation both need the model's wrapping"),
    ("dpo+distill", {}, "distill needs the language-model outputs of every training sequence, which dpo does not"),
    ("dpo+lora-isolation", {}, "dpo needs at most one LoRA adapter, named 'default', which lora-isolation"),
    ("replay+replay", {}, "distinct strategy names"),
    ("replay", {"replay.ratoi": "0.5"}, "unknown option(s) replay.ratoi"),
    ("replay", {"ewc.lam": "1"}, "'ewc.lam' names none of replay"),
    ("replay", {"replay.ratio": "lots"}, "replay.ratio must be float"),
    ("replay", {"replay.ratio": "1.5"}, "replay.ratio must be at most 1"),
    ("replay", {"replay.ratio": "inf"}, "replay.ratio must be a finite number"),
    ("ewc", {"ewc.lam": "-1"}, "ewc.lam must be at least 0"),
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
    monkeypatch.setattr(STRATEGIES, "entries", dict(STRATEGIES.entries))  # the registration ends with the test
    register("noisy", Noisy)
    assert isinstance(make_strategy("noisy+replay").parts[0], Noisy)
    assert isinstance(make_strategy("tests.test_strategies:Noisy"), Noisy)
    with pytest.raises(ContinualError, match="not a subclass"):
        register("bad", dict)
    with pytest.raises(ContinualError, match="without , \\+ : ="):
        register("a+b", Noisy)


def test_every_strategy_runs_from_one_command(tmp_path, capsys):
    from continual.cli import main
    out = tmp_path / "all"
    code = main(["run", "--stream", "facts", "--strategy", ",".join(STRATEGIES), "--model", "tiny", "--steps", "2",
                 "--stream-option", "facts.camp_size=2", "--probe-option", "perplexity.tokens=100", "--probe-option",
                 "kl.tokens=20", "--no-progress", "--no-plots", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    comparison = printed.index(f"== comparison of {len(list(STRATEGIES))} strategies")
    table = printed[comparison:]
    for name in STRATEGIES:
        summary = continual.load_result(out / name).summary
        assert summary["status"] == "completed" and summary["strategy"] == name
        assert printed.index(f"/ {name} / tiny") < comparison  # each run's tables as it finished, then the table
        assert f"| {name} |" in table
    joint = continual.load_result(out / "joint")
    assert list(joint.matrix.index) == ["base", "joint"] and joint.summary["bwt"] is None
    assert len(joint.losses) == 2 * 3  # as many steps as all stages together
    isolation = continual.load_result(out / "lora-isolation").summary
    assert isolation["bwt"] == 0.0 and isolation["forgetting"] == 0.0  # by construction
