"""The probe interface: a measurement of the model taken on the base model once and after every stage.

A probe declares the columns it reports (``columns()``: name, what it means, whether higher is better, its chance
level) and measures a model (``calibrate`` on the base model, ``measure`` after each stage). The runner writes its
columns into probe.csv and summary.json; compare tables, plots and the report read the declarations from
summary.json (``probe_columns``), so a new probe needs no change anywhere else.

    class Echo(Probe):
        name = "echo"
        def columns(self):
            return [Column("echo_score", "what it measures", higher_is_better=True, chance=0.5)]
        def measure(self, model):
            return {"echo_score": ...}

    continual.register_probe("echo", Echo)        # or --probe my.module:Echo
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from continual.options import NoOptions


@dataclass(frozen=True)
class Column:
    """One number a probe reports per row (base, then after every stage)."""
    name: str
    description: str  # what it is and its convention; summary.json's conventions and the tables' notes quote it
    higher_is_better: bool | None = None  # None: neither (a diagnostic)
    chance: float | None = None  # what a model without the capability scores (plots draw it)
    headline: bool = True  # in the comparison table and the probe plot (False: probe.csv and summary.json only)
    primary: bool = False  # a measure of kept capability: the y axis of the learning-vs-forgetting plot
    label: str = ""  # human name for plots and tables (default: the column name)
    unit_interval: bool = False  # a score in [0, 1] (plots use the full range)
    digits: int = 3  # decimal places in tables

    def to_dict(self, probe: str) -> dict:
        return {"probe": probe, **{k: v for k, v in asdict(self).items() if k != "name"}}


@dataclass
class ProbeContext:
    """What a probe may use to set itself up."""
    tokenizer: Any
    general_text: str  # where general English text comes from (continual.probes.general_text: offline or hub)
    batch_size: int  # sequences per forward pass (the run's eval batch size)
    seed: int
    stream: Any = None  # the run's continual.streams.Stream


class Probe:
    name = "base"
    Config: type = NoOptions
    # RunConfig fields that stand for options of this probe ({"probe_limit": "limit"}: --probe-limit N is
    # --probe-option <name>.limit=N), for the few options common enough to deserve a top-level flag
    flags: dict = {}

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    def describe(self) -> dict:
        return asdict(self.config)

    def setup(self, ctx: ProbeContext) -> None:
        """Load items, tokenize text: once per run, before the base model is measured."""

    def columns(self) -> list[Column]:
        raise NotImplementedError

    def calibrate(self, base_model) -> dict:
        """The base model's row; a probe that compares later models with the base keeps what it needs here."""
        return self.measure(base_model)

    def measure(self, model) -> dict:
        """{column: value} for every declared column."""
        raise NotImplementedError
