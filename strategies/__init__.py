"""Strategy registry: one module per strategy, each a small class on the hook interface in ``strategies.base``.

``make_strategy("lora+replay", {"replay.ratio": "0.5"})`` builds a composite; a part may also be an import path
``package.module:Class`` to a user's own Strategy subclass, or a name registered with ``register``.
"""

from __future__ import annotations

import dataclasses
import importlib

from continual.errors import ContinualError
from strategies.base import StageContext, Strategy
from strategies.composite import Composite
from strategies.distill import Distill
from strategies.dpo import DPO
from strategies.ewc import EWC
from strategies.joint import Joint
from strategies.lora import Lora
from strategies.lora_isolation import LoraIsolation
from strategies.naive import Naive
from strategies.replay import Replay

STRATEGIES: dict[str, tuple[type[Strategy], str]] = {
    "naive": (Naive, "full fine-tuning on each task in turn (the forgetting baseline)"),
    "lora": (Lora, "one LoRA adapter trained through all stages, base frozen"),
    "lora-isolation": (LoraIsolation, "a fresh LoRA adapter per task; task j scored with adapter j"),
    "ewc": (EWC, "online EWC: diagonal empirical Fisher penalty towards earlier stages' weights"),
    "replay": (Replay, "a buffer of earlier tasks' examples replaces a fixed share of every batch"),
    "distill": (Distill, "token-level KL to the model before the stage (LwF-style)"),
    "dpo": (DPO, "DPO stages (trl) on true vs false answers, reference = the model before the stage"),
    "joint": (Joint, "reference upper bound: all tasks trained at once in one stage"),
}

# Which parts may share a run, and why not otherwise.
ALONE = {"naive": "naive is the absence of a strategy", "joint": "joint is a reference, not a continual strategy"}
EXCLUSIVE = [({"lora", "lora-isolation"}, "one adapter scheme per run"),
             ({"dpo", "distill"}, "DPO batches carry no single sequence for the distillation KL"),
             ({"dpo", "lora-isolation"}, "trl's DPO reference copies a single adapter named 'default'"),
             ({"dpo", "replay"}, "replayed examples carry no rejected answer")]
SUPPORTED_COMBINATIONS = "lora+replay, lora+ewc, lora+distill, lora+dpo, ewc+replay, ewc+distill, replay+distill, " \
                         "dpo+ewc, lora-isolation+replay, lora-isolation+ewc, and longer chains of these"


def register(name: str, cls: type[Strategy], description: str = "") -> None:
    """Make a user's Strategy subclass available by name (``--strategy name``) without editing the package."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ContinualError(f"register: {cls!r} is not a subclass of strategies.base.Strategy")
    STRATEGIES[name] = (cls, description or ((cls.__doc__ or "").strip().splitlines() or [""])[0])


def _resolve(part: str) -> tuple[str, type[Strategy]]:
    if part in STRATEGIES:
        return part, STRATEGIES[part][0]
    if ":" in part:
        module, _, attr = part.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ContinualError(f"cannot import strategy '{part}': {exc}; give module.path:ClassName of a "
                                 "Strategy subclass on PYTHONPATH") from None
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise ContinualError(f"'{part}' is not a subclass of strategies.base.Strategy")
        return cls.name, cls
    raise ContinualError(f"unknown strategy '{part}'; choose from: {', '.join(STRATEGIES)}, combine with '+' "
                         "(e.g. lora+replay), or give module.path:ClassName (see `continual list`)")


def _coerce(value, kind: str, key: str):
    """Strings (from the command line) become the field's type; other values must already have it."""
    if isinstance(value, str) and kind != "str":
        try:
            if kind == "bool":
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return {"int": int, "float": float}[kind](value)
        except (ValueError, KeyError):
            raise ContinualError(f"strategy option {key} must be {kind}, got {value!r}") from None
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str)}.get(kind, lambda v: True)
    if not ok(value):
        raise ContinualError(f"strategy option {key} must be {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def make_strategy(spec: str, options: dict | None = None) -> Strategy:
    """Build a strategy (or a '+' composite) with its options: keys are 'strategy.field' (e.g. 'ewc.lam')."""
    options = dict(options or {})
    names = [p.strip() for p in spec.split("+")]
    if "" in names or len(set(names)) != len(names):
        raise ContinualError(f"strategy '{spec}': join distinct strategy names with '+', e.g. lora+replay")
    resolved = [_resolve(n) for n in names]
    if len(resolved) > 1:
        keys = {name for name, _ in resolved}
        for name, why in ALONE.items():
            if name in keys:
                raise ContinualError(f"'{spec}': {why}, so it combines with nothing; supported: "
                                     f"{SUPPORTED_COMBINATIONS}")
        for pair, why in EXCLUSIVE:
            if pair <= keys:
                raise ContinualError(f"'{spec}': {' and '.join(sorted(pair))} do not combine ({why}); supported: "
                                     f"{SUPPORTED_COMBINATIONS}")
    for key in options:
        owner = key.partition(".")[0]
        if owner not in {name for name, _ in resolved}:
            raise ContinualError(f"strategy option '{key}' names no strategy of '{spec}'; write "
                                 "<strategy>.<option>, e.g. replay.ratio=0.5")
    parts = []
    for name, cls in resolved:
        fields = {f.name: f for f in dataclasses.fields(cls.Config)}
        mine = {key.partition(".")[2]: value for key, value in options.items() if key.partition(".")[0] == name}
        unknown = sorted(set(mine) - set(fields))
        if unknown:
            known = ", ".join(f"{name}.{f}" for f in fields) or "none"
            raise ContinualError(f"unknown option(s) {', '.join(f'{name}.{u}' for u in unknown)} for strategy "
                                 f"'{name}'; its options: {known}")
        values = {k: _coerce(v, fields[k].type, f"{name}.{k}") for k, v in mine.items()}
        try:
            config = cls.Config(**values)
        except TypeError as exc:
            raise ContinualError(f"strategy '{name}' options: {exc}") from None
        part = cls(config)
        part.name = name  # the name it was asked by (a registered alias, or the class's own name)
        parts.append(part)
    return parts[0] if len(parts) == 1 else Composite(parts)


__all__ = ["STRATEGIES", "SUPPORTED_COMBINATIONS", "StageContext", "Strategy", "make_strategy", "register"]
