"""What a stream is made of: tasks with training examples and scored evaluation splits.

Training examples are (prompt, completion) pairs: the loss falls on the completion only. A task is of one of two
kinds, which decides its evaluation examples:

  choice      (prompt, candidates, label): the model's answer is the candidate with the highest log-probability
              after the prompt. ``classes`` lists the task's verbalised labels when the stream is class-incremental.
  generation  (prompt, reference[, source]): the model's greedy continuation is compared with the reference by the
              task's ``answer_metric`` (ROUGE-L F1 unless the task says otherwise; continual.answer_metrics)

A choice task may also name an ``answer_metric`` (e.g. exact_match): then its greedy answer is generated and scored
too, as the papers on the LLM continual-learning benchmarks do, and ``matrix_metric`` says which of the two fills
the accuracy matrix ("logprob": the best candidate by log-probability; "answer": the generated answer's score).

All are ``datasets.Dataset`` objects so that any Hugging Face tooling applies to them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from datasets import Dataset


@dataclass
class Task:
    name: str
    train: Dataset  # columns: prompt, completion
    eval: dict[str, Dataset]  # split name -> columns: prompt, candidates, label (choice) or prompt, reference
    matrix_split: str = "train"  # the eval split whose accuracy fills the accuracy matrix
    description: str = ""
    kind: str = "choice"  # "choice" or "generation"
    classes: list[str] = field(default_factory=list)  # verbalised labels of this task (class-incremental streams)
    answer_metric: str = ""  # generation: how a greedy answer is scored ("" = rougeL_f1); choice: also generate
    matrix_metric: str = "logprob"  # choice tasks with an answer_metric: "logprob" or "answer" fills the matrix
    max_answer_tokens: int = 0  # generated tokens per answer at most (0: the evaluation's own default)

    def __post_init__(self):
        if self.matrix_split not in self.eval:
            raise ValueError(f"task {self.name}: matrix split '{self.matrix_split}' is not among {list(self.eval)}")
        if self.kind not in ("choice", "generation"):
            raise ValueError(f"task {self.name}: kind must be 'choice' or 'generation', got '{self.kind}'")
        if self.matrix_metric not in ("logprob", "answer"):
            raise ValueError(f"task {self.name}: matrix_metric must be 'logprob' or 'answer'")

    @property
    def scored_by(self) -> str:
        """The metric that fills this task's accuracy matrix cells (scores.csv's ``metric``)."""
        if self.kind == "generation":
            return self.answer_metric or "rougeL_f1"
        return self.answer_metric if self.answer_metric and self.matrix_metric == "answer" else "accuracy"

    @property
    def answers(self) -> list[str]:
        """The candidate answers of a choice task (its matrix split's, the same for every example of the built-in
        and custom streams); a training completion is one of them, possibly followed by more text (" friend.").
        Empty for generation tasks."""
        if self.kind != "choice":
            return []
        split = self.eval[self.matrix_split]
        return list(split[0]["candidates"]) if len(split) else list(self.classes)


def answer_of(completion: str, answers: list[str]) -> int | None:
    """The index of the candidate answer a training completion begins with (the longest such: " friend" in
    " friend."), or None."""
    matches = [i for i, a in enumerate(answers) if completion.startswith(a)]
    return max(matches, key=lambda i: len(answers[i])) if matches else None


@dataclass
class Stream:
    name: str
    tasks: list[Task]
    scenario: str  # task-, domain- or class-incremental
    description: str = ""
    options: dict = field(default_factory=dict)  # the resolved generation options, recorded in config.yaml
    orders: dict[str, list[str]] = field(default_factory=dict)  # named task orders (the papers': "1", "2", ...)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def fingerprint(self) -> str:
        """sha256 of every example the run trains and scores on (each task's rows, in order, and how it is scored):
        part of a run's identity, so a data file edited between a kill and the re-run makes a different run
        instead of a silent resume on other data."""
        digest = hashlib.sha256()
        for task in self.tasks:
            head = {"name": task.name, "kind": task.kind, "classes": task.classes, "matrix_split": task.matrix_split,
                    "answer_metric": task.answer_metric, "matrix_metric": task.matrix_metric}
            digest.update(json.dumps(head, sort_keys=True).encode())
            for split, data in [("train", task.train), *sorted(task.eval.items())]:
                digest.update(json.dumps([split, data.to_dict()], sort_keys=True, default=str).encode())
        return digest.hexdigest()

    @property
    def class_incremental(self) -> bool:
        return self.scenario.startswith("class-incremental")

    def label_space(self, task: int, seen: int) -> list[str] | None:
        """The candidates task ``task`` is scored over once the model has been trained on tasks 0..``seen``
        (-1: the base model): in a class-incremental stream, the labels of tasks 0..max(seen, task) in stream
        order, so that a task's own labels are always there and forward transfer stays measurable. None: the
        task's own candidates (task- and domain-incremental streams)."""
        if not self.class_incremental:
            return None
        labels: list[str] = []
        for t in self.tasks[:max(seen, task) + 1]:
            labels += [c for c in t.classes if c not in labels]
        return labels
