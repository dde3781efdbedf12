"""Strategy registry: one module per strategy, each a small class on the hook interface in ``strategies.base``.

``make_strategy("lora+replay", {"replay.ratio": "0.5"})`` builds a composite; a part may also be an import path
``package.module:Class`` to a user's own Strategy subclass, or a name registered with ``register``. Which parts
combine follows from what each declares (strategies.base, strategies.composite.combination_problem).
"""

from __future__ import annotations

from itertools import combinations

from continual.errors import ContinualError
from continual.options import build, split_namespaced
from continual.registry import Registry
from strategies.agem import AGEM
from strategies.base import Stage, StageContext, Strategy
from strategies.composite import Composite, combination_problem
from strategies.distill import Distill
from strategies.dpo import DPO
from strategies.ewc import EWC
from strategies.generative_replay import GenerativeReplay
from strategies.joint import Joint
from strategies.lora import Lora
from strategies.lora_isolation import LoraIsolation
from strategies.lora_merge import LoraMerge
from strategies.merge import Merge
from strategies.naive import Naive
from strategies.o_lora import OLora
from strategies.osf import OSF
from strategies.replay import Replay

STRATEGIES = Registry("strategy", lambda v: isinstance(v, type) and issubclass(v, Strategy),
                      "a subclass of strategies.base.Strategy")
STRATEGIES.register("naive", Naive, "full fine-tuning on each task in turn (the forgetting baseline)")
STRATEGIES.register("lora", Lora, "one LoRA adapter trained through all stages, base frozen")
STRATEGIES.register("lora-isolation", LoraIsolation, "a fresh LoRA adapter per task; task j scored with adapter j")
STRATEGIES.register("ewc", EWC, "online EWC: diagonal empirical Fisher penalty towards earlier stages' weights")
STRATEGIES.register("replay", Replay, "a buffer of earlier tasks' examples replaces a fixed share of every batch")
STRATEGIES.register("distill", Distill, "token-level KL to the model before the stage (LwF-style)")
STRATEGIES.register("dpo", DPO, "DPO stages (trl) on true vs false answers, reference = the model before the stage")
STRATEGIES.register("o-lora", OLora, "a new LoRA adapter per task kept orthogonal to the earlier (frozen, active) "
                    "ones; their sum is the model (Wang et al. 2023)")
STRATEGIES.register("agem", AGEM, "A-GEM: project each step's gradient so the loss on an episodic memory does not "
                    "rise (Chaudhry et al. 2019)")
STRATEGIES.register("generative-replay", GenerativeReplay, "the model writes pseudo-examples of earlier tasks, "
                    "replayed in every batch (LAMOL / self-synthesised rehearsal)")
STRATEGIES.register("merge", Merge, "after each stage, merge the new weights with the previous stage's (linear, "
                    "TIES, DARE task vectors)")
STRATEGIES.register("lora-merge", LoraMerge, "a LoRA adapter per task, merged into one (peft) that every task is "
                    "scored with: no task id")
STRATEGIES.register("osf", OSF, "peft's orthogonal subspace fine-tuning, stage by stage: train off the weights' top "
                    "singular directions, merge, re-decompose")
STRATEGIES.register("joint", Joint, "reference upper bound: all tasks trained at once in one stage")


def register(name: str, cls: type[Strategy], description: str = "") -> None:
    """Make a user's Strategy subclass available by name (``--strategy name``) without editing the package."""
    STRATEGIES.register(name, cls, description)


def supported_combinations() -> list[str]:
    """Every pair of registered strategies whose declarations allow one run (longer chains of these combine too,
    when every pair in them does)."""
    entries = [STRATEGIES.resolve(n) for n in STRATEGIES]
    pairs = []
    for a, b in combinations(entries, 2):
        parts = [a.value(), b.value()]
        parts[0].name, parts[1].name = a.name, b.name
        if combination_problem(parts) is None:
            pairs.append(f"{a.name}+{b.name}")
    return pairs


def make_strategy(spec: str, options: dict | None = None) -> Strategy:
    """Build a strategy (or a '+' composite) with its options: keys are 'strategy.field' (e.g. 'ewc.lam')."""
    names = [p.strip() for p in spec.split("+")]
    if "" in names or len(set(names)) != len(names):
        raise ContinualError(f"strategy '{spec}': join distinct strategy names with '+', e.g. lora+replay")
    entries = [STRATEGIES.resolve(n) for n in names]
    by_name = split_namespaced(options or {}, [e.name for e in entries], f"strategy option (for '{spec}')",
                               "replay.ratio=0.5")
    parts = []
    for entry in entries:
        part = entry.value(build(entry.value.Config, by_name[entry.name], prefix=f"{entry.name}."))
        part.name = entry.name  # the name it was asked by (a registered alias, or the class's own name)
        parts.append(part)
    problem = combination_problem(parts)
    if problem:
        raise ContinualError(f"'{spec}' does not combine: {problem}; combinations that do: "
                             f"{', '.join(supported_combinations())}")
    return parts[0] if len(parts) == 1 else Composite(parts)


__all__ = ["STRATEGIES", "Stage", "StageContext", "Strategy", "make_strategy", "register", "supported_combinations"]
