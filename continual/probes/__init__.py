"""The probe registry: what the runner measures on the base model and after every stage (``--probe a,b``).

Built in: ``cloze`` (knowledge cloze accuracy and retention), ``perplexity`` and ``kl`` on held-out general text,
``lm-eval:<tasks>`` (lm-evaluation-harness tasks, continual[lm-eval]).
A user probe subclasses ``continual.probes.base.Probe`` and is registered (``register_probe``) or named
``module.path:Class``.
"""

from __future__ import annotations

from continual.errors import ContinualError
from continual.options import build, split_namespaced
from continual.probes.base import Column, Probe, ProbeContext
from continual.probes.cloze import ClozeProbe
from continual.probes.kl import KLProbe
from continual.probes.lm_eval import LMEvalProbe
from continual.probes.perplexity import PerplexityProbe
from continual.registry import Registry

PROBES = Registry("probe", lambda v: isinstance(v, type) and issubclass(v, Probe),
                  "a subclass of continual.probes.base.Probe")
PROBES.register("cloze", ClozeProbe, "knowledge cloze accuracy (answer vs 3 distractors) and retention")
PROBES.register("perplexity", PerplexityProbe, "perplexity on held-out general English text, and its ratio to base")
PROBES.register("kl", KLProbe, "mean per-token KL(base || model) on held-out general English text")
PROBES.register("lm-eval", LMEvalProbe, "lm-evaluation-harness tasks (lm-eval:<tasks or preset>, e.g. "
                "lm-eval:biderman); needs continual[lm-eval]")


def register_probe(name: str, cls: type[Probe], description: str = "") -> None:
    """Make a user's Probe subclass available by name (``--probe name``)."""
    from continual.config import RunConfig
    stray = [f for f in getattr(cls, "flags", {}) if f not in RunConfig.__dataclass_fields__]
    if stray:
        raise ContinualError(f"register_probe {name}: flags {', '.join(stray)} are not RunConfig fields (a probe's "
                             f"own options are --probe-option {name}.<option>=<value>; flags only name shared ones)")
    PROBES.register(name, cls, description)


def make_probes(spec: str, options: dict | None = None) -> list[Probe]:
    """Probes from a comma-separated spec with their options ({'kl.tokens': 512}); every column name once."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    # "lm-eval:hellaswag+arc_challenge": a registered probe with its argument (its ``tasks`` option)
    arguments = {}
    for i, n in enumerate(names):
        head, sep, argument = n.partition(":")
        if sep and head in PROBES:
            names[i], arguments[head] = head, argument
    if len(set(names)) != len(names):
        raise ContinualError(f"--probe '{spec}' names a probe twice")
    entries = [PROBES.resolve(n) for n in names]
    by_name = split_namespaced(options or {}, [e.name for e in entries], "probe option", "kl.tokens=512")
    for head, argument in arguments.items():
        by_name[head].setdefault("tasks", argument)
    probes = []
    for entry in entries:
        probe = entry.value(build(entry.value.Config, by_name[entry.name], prefix=f"{entry.name}."))
        probe.name = entry.name
        probes.append(probe)
    return probes


def check_columns(probes: list[Probe]) -> None:
    """Column names are the keys of probe.csv and summary.json: no two probes may report the same one."""
    seen: dict[str, str] = {"after": "the runner"}
    for probe in probes:
        for column in probe.columns():
            if column.name in seen:
                raise ContinualError(f"probes {seen[column.name]} and {probe.name} both report a column "
                                     f"'{column.name}'; rename one")
            seen[column.name] = probe.name


__all__ = ["PROBES", "Column", "Probe", "ProbeContext", "check_columns", "make_probes", "register_probe"]
