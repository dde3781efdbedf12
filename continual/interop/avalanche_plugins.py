"""Avalanche plugins inside our runner: a Strategy that calls ``SupervisedPlugin`` callbacks from our hooks.

Avalanche plugins receive the strategy template and read or replace its state (experience, dataloader, loss, ...).
``PluginStrategy`` keeps a stand-in for that template, ``PluginHost``, and calls the callbacks that have a place in
our stage loop:

    our hook        Avalanche callbacks, in Avalanche's order
    before_stage    before_training, before_train_dataset_adaptation, after_train_dataset_adaptation,
                    before_training_exp   (host.experience: the stage's task, items {prompt, completion, task label})
    mix_batches     if a plugin replaced host.dataloader (ReplayPlugin does), the stage's batches are drawn from it,
                    one per planned step; otherwise the planned batches stay
    loss_terms      after_forward, before_backward: what the plugins add to host.loss is added to the LM loss
    after_stage     after_training_exp, after_training

Not delivered, because our trainer (the HF Trainer) owns those moments: before/after_training_epoch and _iteration,
before_forward, after_backward, before/after_update, and every eval callback (our runner scores tasks itself). A
plugin that overrides one of them is refused when the strategy is built, naming them.

Batches are lists of example dicts (prompt, completion), not (x, y, task) tensors: plugins that only move examples
around (ReplayPlugin and its storage policies) work; plugins that run a classifier on batch[0] and batch[1]
(EWCPlugin's importances) or need class targets (LwFPlugin) stop with an error that says so (docs/avalanche.md).
Plugin randomness (reservoir sampling, loader shuffling) runs under torch's RNG seeded per stage, so a run repeats.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from continual.errors import ContinualError
from continual.interop.avalanche import collate_examples, task_dataset
from strategies.base import StageContext, Strategy

from avalanche.benchmarks.scenarios import DatasetExperience, with_task_labels
from avalanche.training.plugins import ReplayPlugin, SupervisedPlugin

DELIVERED = ("before_training", "before_train_dataset_adaptation", "after_train_dataset_adaptation",
             "before_training_exp", "after_forward", "before_backward", "after_training_exp", "after_training")
NOT_DELIVERED = ("before_training_epoch", "before_training_iteration", "before_forward", "after_backward",
                 "after_training_iteration", "before_update", "after_update", "after_training_epoch", "before_eval",
                 "before_eval_exp", "before_eval_dataset_adaptation", "after_eval_dataset_adaptation",
                 "before_eval_iteration", "before_eval_forward", "after_eval_forward", "after_eval_iteration",
                 "after_eval_exp", "after_eval")


@dataclass
class Clock:
    """The counters of Avalanche's clock that plugins read."""
    train_exp_counter: int = 0  # experiences trained before the current one
    train_iterations: int = 0


@dataclass
class PluginHost:
    """What a plugin sees as ``strategy``: the attributes of Avalanche's SupervisedTemplate our loop can fill."""
    model: torch.nn.Module
    device: str = "cpu"
    train_mb_size: int = 8
    clock: Clock = field(default_factory=Clock)
    experience: object = None
    adapted_dataset: object = None
    dataloader: object = None
    mbatch: object = None  # the batch dict the trainer feeds the model (input_ids, attention_mask, labels)
    mb_output: object = None  # the model's logits on it
    loss: object = None
    optimizer: object = None  # owned by the HF Trainer, not exposed
    _criterion: object = None  # none: the LM loss comes from the model itself (labels), not criterion(output, y)
    is_training: bool = True


class PluginStrategy(Strategy):
    """Runs the Avalanche plugins that ``make_plugins()`` returns (subclass it, or use ``plugin_strategy``)."""
    name = "avalanche-plugins"

    def __init__(self, config=None):
        super().__init__(config)
        self.plugins = list(self.make_plugins())
        for plugin in self.plugins:
            if not isinstance(plugin, SupervisedPlugin):
                raise ContinualError(f"{type(plugin).__name__} is not an Avalanche SupervisedPlugin")
            missing = [cb for cb in NOT_DELIVERED
                       if getattr(type(plugin), cb, None) is not getattr(SupervisedPlugin, cb, None)]
            if missing:
                raise ContinualError(f"Avalanche plugin {type(plugin).__name__} uses callback(s) {', '.join(missing)}, "
                                     "which have no place here (the HF Trainer owns the step, our runner the "
                                     f"evaluation); supported: {', '.join(DELIVERED)}")
        self.host: PluginHost | None = None
        # a loss term exists (and is logged) only when some plugin can add to the loss
        self.adds_loss = any(getattr(type(p), cb) is not getattr(SupervisedPlugin, cb)
                             for p in self.plugins for cb in ("after_forward", "before_backward"))

    def make_plugins(self) -> list[SupervisedPlugin]:
        raise NotImplementedError("subclass PluginStrategy and return the plugins from make_plugins()")

    def describe(self) -> dict:
        """Options, and each plugin's class and plain settings (for config.yaml)."""
        def settings(plugin):
            return {k: v for k, v in vars(plugin).items() if isinstance(v, (bool, int, float, str, type(None)))}
        return {**super().describe(), "plugins": [{"class": type(p).__name__, **settings(p)} for p in self.plugins]}

    def configure(self, ctx: StageContext) -> None:
        """Per-stage settings of the plugins (a subclass hook); runs before the first callback of the stage."""

    # --------------------------------------------------------------------------------------------- our hooks

    def setup(self, model):
        self.host = PluginHost(model=model)
        return model

    def before_stage(self, model, ctx: StageContext) -> None:
        host = self.host
        host.model, host.device, host.train_mb_size = model, ctx.device, ctx.batch_size
        host.clock.train_exp_counter = ctx.index
        data = task_dataset(ctx.task.train, ctx.index, collate_examples)
        host.experience = with_task_labels(DatasetExperience(dataset=data, current_experience=ctx.index))
        host.adapted_dataset = host.dataloader = None
        self.configure(ctx)
        with self._seeded(ctx, "before"):
            self._call("before_training")
            self._call("before_train_dataset_adaptation")
            host.adapted_dataset = host.experience.dataset
            self._call("after_train_dataset_adaptation")
            # drop_last: every step trains on a full batch, as in every other strategy
            self._call("before_training_exp", num_workers=0, shuffle=True, drop_last=True)

    def mix_batches(self, batches, ctx):
        loader = self.host.dataloader
        if loader is None:
            return batches
        drawn: list[list[dict]] = []
        with self._seeded(ctx, "batches"):
            while len(drawn) < len(batches):
                before = len(drawn)
                drawn += [list(batch) for batch in loader][:len(batches) - len(drawn)]
                if len(drawn) == before:
                    raise ContinualError(f"the dataloader of {self._names()} yields no batch for task "
                                         f"'{ctx.task.name}' ({len(ctx.task.train)} examples): lower --batch-size")
        return drawn

    def loss_terms(self, model, inputs, outputs):
        host = self.host
        host.mbatch = inputs
        host.mb_output = getattr(outputs, "logits", None)
        host.loss = torch.zeros((), device=inputs["input_ids"].device)  # plugins add to it, often in place
        self._call("after_forward")
        self._call("before_backward")
        host.clock.train_iterations += 1
        return {"avalanche": host.loss} if self.adds_loss else {}

    def after_stage(self, model, ctx) -> None:
        with self._seeded(ctx, "after"):
            self._call("after_training_exp", num_workers=0)
            self._call("after_training")
        self.host.mbatch = self.host.mb_output = self.host.loss = None

    def state_dict(self) -> dict:
        return {"plugins": self.plugins}  # buffers and plugin state, pickled with the checkpoint

    def load_state_dict(self, state, model) -> None:
        self.plugins = state["plugins"]

    # --------------------------------------------------------------------------------------------- helpers

    def _names(self) -> str:
        return ", ".join(type(p).__name__ for p in self.plugins)

    def _call(self, callback: str, **kwargs) -> None:
        for plugin in self.plugins:
            try:
                getattr(plugin, callback)(self.host, **kwargs)
            except ContinualError:
                raise
            except Exception as exc:
                raise ContinualError(
                    f"Avalanche plugin {type(plugin).__name__} failed in {callback} ({type(exc).__name__}: {exc}); "
                    "batches here are lists of prompt/completion example dicts of a causal LM, not (x, y, task) "
                    "tensors of a classifier: see docs/avalanche.md for which plugins fit") from exc

    @staticmethod
    @contextmanager
    def _seeded(ctx: StageContext, where: str):
        """torch's global RNG (which Avalanche's buffers and loaders draw from) seeded per run, stage and hook."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(zlib.crc32(f"avalanche:{ctx.seed}:{ctx.index}:{where}".encode()))
            yield


def plugin_strategy(name: str, make_plugins, description: str = "") -> type[PluginStrategy]:
    """A Strategy class running ``make_plugins()`` (fresh plugins for every run); register it with
    ``strategies.register(name, cls)`` to use it as ``--strategy name`` or in ``continual.run``. A run directory's
    config hash covers the strategy's name and options, not what ``make_plugins`` builds: give different plugin
    settings different names (or subclass PluginStrategy with a Config dataclass, as AvalancheReplay does)."""
    return type(f"Plugins_{name}", (PluginStrategy,), {"name": name, "make_plugins": lambda self: make_plugins(),
                                                      "__doc__": description or f"Avalanche plugins: {name}"})


@dataclass
class ReplayOptions:
    """Avalanche's ReplayPlugin with an experience-balanced buffer."""
    mem_size: int = 200  # examples kept across all past tasks (split evenly between them)
    ratio: float = 0.25  # share of every batch drawn from the buffer once it holds examples


class AvalancheReplay(PluginStrategy):
    """Avalanche's ReplayPlugin in our runner: ``--strategy continual.interop.avalanche_plugins:AvalancheReplay``."""
    name = "avalanche-replay"
    Config = ReplayOptions

    def make_plugins(self):
        if not 0 < self.config.ratio < 1 or self.config.mem_size < 1:
            raise ContinualError("avalanche-replay needs 0 < ratio < 1 and mem_size >= 1")
        return [ReplayPlugin(mem_size=self.config.mem_size)]

    def configure(self, ctx):
        memory = round(self.config.ratio * ctx.batch_size)
        if not 0 < memory < ctx.batch_size:
            raise ContinualError(f"avalanche-replay.ratio={self.config.ratio} leaves no room for both current and "
                                 f"replayed examples in a batch of {ctx.batch_size}; change the ratio or --batch-size")
        self.plugins[0].batch_size, self.plugins[0].batch_size_mem = ctx.batch_size - memory, memory
