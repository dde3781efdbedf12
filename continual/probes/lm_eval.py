"""lm-evaluation-harness tasks as a probe: ``--probe lm-eval:<tasks>`` runs them on the in-memory model after base
and every stage (lm-eval 0.4's ``HFLM`` over the loaded model and tokenizer; no copy, nothing re-read from disk).

    --probe cloze,lm-eval:biderman                         # a preset (below)
    --probe lm-eval:hellaswag+arc_challenge                # tasks joined by '+'
    --probe-option lm-eval.limit=200 --probe-option lm-eval.include=my_tasks/   # local task YAMLs

Presets name the papers' sets: ``biderman`` (HellaSwag, ARC-Challenge, WinoGrande: Biderman et al. 2024's forgetting
score is their mean) and ``trace-general`` (MMLU, GSM8K, BBH, TyDiQA, BoolQ, PIQA: TRACE's general-ability delta).
Each task's metrics become columns ``<task>_<metric>`` (the first metric headline, the stderr beside it), and two
more: ``lmeval_mean`` (the mean of every task's first metric: for ``biderman``, Biderman's score) and
``lmeval_delta`` (the mean over tasks of score - base score: TRACE's general-ability delta, Delta GA).

Most of lm-eval's tasks read their data from the Hugging Face hub; without the network they fail, with one line
saying how to point at local data: a task YAML with ``dataset_path: json`` and ``dataset_kwargs: {data_files:
...}`` in a folder given as ``lm-eval.include``. The embedded cloze items ship as such a task
(continual/probes/lm_eval_tasks: ``continual_cloze``), so lm-eval users can run them outside continual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from continual.errors import ContinualError
from continual.options import Options, option
from continual.probes.base import Column, Probe
from continual.scoring import eval_mode, model_device

PRESETS = {"biderman": ["hellaswag", "arc_challenge", "winogrande"],
           "trace-general": ["mmlu", "gsm8k", "bbh", "tydiqa", "boolq", "piqa"]}
TASKS_FOLDER = Path(__file__).with_name("lm_eval_tasks")
INSTALL = "pip install 'continual[lm-eval]' (lm-eval 0.4)"


@dataclass
class LMEvalOptions(Options):
    tasks: str = option("", "lm-eval task names or presets (biderman, trace-general), joined by '+' or ','")
    limit: int = option(100, "examples per task at most (0: all); every stage scores them, so keep it small on a "
                        "CPU", low=0)
    include: str = option("", "a folder of task YAMLs to add (local data: dataset_path: json)",
                          shown_default="only continual's own (continual_cloze)")
    num_fewshot: int = option(-1, "few-shot examples (-1: each task's own default)", low=-1)
    batch_size: int = option(0, "sequences per forward pass (0: the run's eval batch size)", low=0)


def task_names(spec: str) -> list[str]:
    names = []
    for part in spec.replace("+", ",").split(","):
        part = part.strip()
        if part:
            names += PRESETS.get(part, [part])
    return list(dict.fromkeys(names))


def _metric_values(result: dict) -> dict[str, float]:
    """{metric: value} of one task's results ("acc,none": 0.4 -> "acc"; stderr as "<metric>_stderr")."""
    out = {}
    for key, value in result.items():
        metric, sep, _filter = key.partition(",")
        if not sep or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        out[metric] = float(value)
    return out


class LMEvalProbe(Probe):
    name = "lm-eval"
    Config = LMEvalOptions
    flags = {"probe_limit": "limit", "probe_include": "include"}

    def setup(self, ctx):
        try:
            from lm_eval.tasks import TaskManager
        except ImportError:
            raise ContinualError(f"the lm-eval probe needs lm-evaluation-harness: {INSTALL}") from None
        self.names = task_names(self.config.tasks)
        if not self.names:
            raise ContinualError("the lm-eval probe names no task: --probe lm-eval:<task or preset>, e.g. "
                                 "lm-eval:biderman, or --probe-option lm-eval.tasks=hellaswag")
        self.tokenizer, self.batch_size = ctx.tokenizer, self.config.batch_size or ctx.batch_size
        folders = [str(TASKS_FOLDER)] + ([self.config.include] if self.config.include else [])
        for folder in folders[1:]:
            if not Path(folder).is_dir():
                raise ContinualError(f"lm-eval.include '{folder}' is not a folder of task YAMLs")
        manager = TaskManager(include_path=folders, include_defaults=False)
        if not set(self.names) <= set(manager.all_tasks):  # lm-eval's own tasks: index them (about 15 s)
            manager = TaskManager(include_path=folders, include_defaults=True)
        unknown = [n for n in self.names if n not in manager.all_tasks]
        if unknown:
            raise ContinualError(f"lm-eval knows no task {', '.join(unknown)}; name its tasks, groups or presets "
                                 f"({', '.join(PRESETS)}), or add task YAMLs with lm-eval.include=DIR")
        try:
            self.task_dict = manager.load(self.names)
        except (ConnectionError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ContinualError(f"lm-eval could not load the data of {', '.join(self.names)} ({first}): the hub "
                                 "cannot be reached; write task YAMLs over local files (dataset_path: json) and "
                                 "pass their folder as lm-eval.include") from None
        self.columns_: list[Column] = []
        self.base: dict[str, float] = {}

    def _evaluate(self, model) -> dict[str, dict[str, float]]:
        from lm_eval.evaluator import evaluate
        from lm_eval.models.huggingface import HFLM
        with eval_mode(model):
            device = str(model_device(model))
            lm = HFLM(pretrained=model, tokenizer=self.tokenizer, batch_size=self.batch_size, device=device)
            if self.config.num_fewshot >= 0:
                for task in _leaves(self.task_dict):
                    task.set_config(key="num_fewshot", value=self.config.num_fewshot)
            results = evaluate(lm=lm, task_dict=self.task_dict, limit=self.config.limit or None, log_samples=False,
                               verbosity="ERROR")
        return {name: _metric_values(results["results"].get(name, {})) for name in self.names}

    def calibrate(self, base_model):
        scores = self._evaluate(base_model)
        self.columns_, self.sources = [], {}
        for name in self.names:
            metrics = [m for m in scores[name] if not m.endswith("_stderr")]
            if not metrics:
                raise ContinualError(f"lm-eval task {name} reported no metric")
            for k, metric in enumerate(metrics):
                self.columns_.append(Column(f"{name}_{metric}", f"lm-eval {name}: {metric} (limit "
                                            f"{self.config.limit or 'none'})", higher_is_better=True,
                                            headline=k == 0))
                self.sources[f"{name}_{metric}"] = (name, metric)
                if f"{metric}_stderr" in scores[name]:
                    self.columns_.append(Column(f"{name}_{metric}_stderr", f"lm-eval {name}: standard error of "
                                                f"{metric}", headline=False))
                    self.sources[f"{name}_{metric}_stderr"] = (name, f"{metric}_stderr")
        self.primary = {name: next(m for m in scores[name] if not m.endswith("_stderr")) for name in self.names}
        self.base = {name: scores[name][self.primary[name]] for name in self.names}
        return self._row(scores)

    def columns(self):
        return self.columns_ + [
            Column("lmeval_mean", f"mean over {', '.join(self.names)} of each task's first metric (Biderman et al. "
                   "2024's forgetting score for hellaswag, arc_challenge, winogrande)", higher_is_better=True,
                   primary=True, label="lm-eval tasks, mean score", unit_interval=True),
            Column("lmeval_delta", "mean over the lm-eval tasks of score - base score (TRACE's general-ability "
                   "delta)", higher_is_better=True, chance=0.0, label="general-ability delta")]

    def _row(self, scores) -> dict:
        row = {}
        for column, (name, metric) in self.sources.items():
            row[column] = scores[name].get(metric, math.nan)
        primary = [scores[n].get(self.primary[n], math.nan) for n in self.names]
        row["lmeval_mean"] = sum(primary) / len(primary)
        row["lmeval_delta"] = sum(p - self.base[n] for p, n in zip(primary, self.names)) / len(primary)
        return row

    def measure(self, model):
        return self._row(self._evaluate(model))


def _leaves(task_dict):
    for value in task_dict.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value
