"""What a stream is made of: tasks with training examples and scored evaluation splits.

Training examples are (prompt, completion) pairs: the loss falls on the completion only. Evaluation examples are
(prompt, candidates, label): the model's answer is the candidate with the highest log-probability after the prompt.
Both are ``datasets.Dataset`` objects so that any Hugging Face tooling applies to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset


@dataclass
class Task:
    name: str
    train: Dataset  # columns: prompt, completion
    eval: dict[str, Dataset]  # split name -> columns: prompt, candidates, label
    matrix_split: str = "train"  # the eval split whose accuracy fills the accuracy matrix
    description: str = ""

    def __post_init__(self):
        if self.matrix_split not in self.eval:
            raise ValueError(f"task {self.name}: matrix split '{self.matrix_split}' is not among {list(self.eval)}")


@dataclass
class Stream:
    name: str
    tasks: list[Task]
    scenario: str  # task-, domain- or class-incremental
    description: str = ""
    options: dict = field(default_factory=dict)  # the resolved generation options, recorded in config.yaml

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]
