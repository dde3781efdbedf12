"""Avalanche (avalanche-lib 0.6) interop: any stream as an Avalanche benchmark, and Avalanche's metrics on our matrices.

``to_avalanche(stream, tokenizer)`` builds a ``CLScenario`` with ``benchmark_from_datasets`` + ``with_task_labels``:

    train_stream      one experience per task (task label = the task's index in the stream); items are dicts
                      {prompt, completion, [rejected,] input_ids, labels, targets_task_labels}: every column of the
                      task's training set, and with a tokenizer input_ids/labels, the completion-only tokenization
                      our trainer uses (prompt tokens labelled -100)
    test_stream       one experience per task: the split that fills our accuracy matrix; items
                      {prompt, candidates, label, targets_task_labels}, and ``dataset.targets`` = label
    <split>_stream    one more stream per other evaluation split every task has (facts: reversed, heldout)

Each dataset's ``collate_fn`` makes dict batches: padded tensors (input_ids, attention_mask, labels) for tokenized
training data, lists of strings otherwise, and ``targets_task_labels`` as a tensor. ``evaluate_experience`` scores a
test experience exactly as our runner scores a task (batched candidate log-probabilities). ``CausalLMProblem`` lets
Avalanche's own strategy templates (and their plugins, e.g. ReplayPlugin) train a causal LM on the training streams.

``avalanche_metrics(R, b)`` computes ACC/BWT/FWT/forgetting of an accuracy matrix with Avalanche's own metric
objects, driven by Avalanche's own training/evaluation loop (see the function), so that the conventions of the two
toolkits can be compared on the same numbers; docs/avalanche.md states where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets

from continual.errors import ContinualError
from continual.streams import Stream
from continual.training import IGNORE, CompletionCollator, tokenize_completions

INSTALL = ("avalanche-lib is not installed; `pip install 'continual[avalanche]'` (or `make install`, which installs it "
           "without qpsolvers' optional solvers)")

try:
    from avalanche.benchmarks.scenarios import benchmark_from_datasets, with_task_labels
    from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute, TaskLabels
except ImportError as exc:  # one clear line instead of a traceback from deep inside the import
    raise ContinualError(f"{INSTALL} ({exc})") from None


class Rows(torch.utils.data.Dataset):
    """A ``datasets.Dataset`` as a map-style torch dataset of fresh dicts (Avalanche adds keys to the items)."""

    def __init__(self, rows: Dataset):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i) -> dict:
        return dict(self.rows[int(i)])


def _task_labels(items: list[dict]) -> torch.Tensor:
    return torch.tensor([item["targets_task_labels"] for item in items], dtype=torch.long)


def collate_text(items: list[dict]) -> dict:
    """Untokenized batches: every key a list, the task labels a tensor."""
    batch = {key: [item[key] for item in items] for key in items[0] if key != "targets_task_labels"}
    batch["targets_task_labels"] = _task_labels(items)
    if "label" in batch:
        batch["label"] = torch.tensor(batch["label"], dtype=torch.long)
    return batch


@dataclass
class CollateTokens:
    """Tokenized training batches ready for ``model(input_ids=..., attention_mask=..., labels=...)``: right-padded
    exactly as our trainer pads them (pad id, labels -100), plus the task labels."""
    pad_token_id: int

    def __call__(self, items: list[dict]) -> dict:
        batch = CompletionCollator(self.pad_token_id)(items)
        batch["targets_task_labels"] = _task_labels(items)
        return batch


def collate_examples(items: list[dict]) -> list[dict]:
    """Batches as lists of example dicts (what our runner's ``Strategy.mix_batches`` works on)."""
    return items


def task_dataset(rows: Dataset, task_label: int, collate_fn, targets: list[int] | None = None) -> AvalancheDataset:
    """One task's rows as an AvalancheDataset whose items carry the task label."""
    attributes = [TaskLabels([task_label] * len(rows))]
    if targets is not None:
        attributes.append(DataAttribute(list(targets), "targets"))
    return AvalancheDataset([Rows(rows)], data_attributes=attributes, collate_fn=collate_fn)


def train_rows(task, tokenizer=None, max_length: int = 128) -> Dataset:
    """A task's training pairs, with our completion-only input_ids/labels beside the text when given a tokenizer."""
    if tokenizer is None:
        return task.train
    tokens = tokenize_completions(task.train, tokenizer, max_length)
    return concatenate_datasets([task.train, tokens], axis=1)


def to_avalanche(stream: Stream, tokenizer=None, max_length: int = 128):
    """The stream as an Avalanche ``CLScenario`` (see the module docstring for streams, items and batches)."""
    if not stream.tasks:
        raise ContinualError(f"stream '{stream.name}' has no tasks to export")
    if tokenizer is not None and tokenizer.pad_token_id is None:
        raise ContinualError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token) first")
    train_collate = collate_text if tokenizer is None else CollateTokens(tokenizer.pad_token_id)
    streams = {"train": [task_dataset(train_rows(t, tokenizer, max_length), i, train_collate)
                         for i, t in enumerate(stream.tasks)],
               "test": [task_dataset(t.eval[t.matrix_split], i, collate_text, t.eval[t.matrix_split]["label"])
                        for i, t in enumerate(stream.tasks)]}
    shared = set.intersection(*(set(t.eval) - {t.matrix_split} for t in stream.tasks))
    reserved = {"train", "test"}
    for split in sorted(shared - reserved):
        streams[split] = [task_dataset(t.eval[split], i, collate_text, t.eval[split]["label"])
                          for i, t in enumerate(stream.tasks)]
    return with_task_labels(benchmark_from_datasets(**streams))


class CausalLMProblem:
    """Mixin that lets an Avalanche supervised template train a causal LM on ``to_avalanche`` training experiences
    (tokenized): put it first, ``class LMNaive(CausalLMProblem, Naive)``.

    Avalanche's templates unpack a mini-batch as an (x, y, task) tuple and apply ``criterion(model(x), y)``; here the
    mini-batch is the dict ``CollateTokens`` makes, the output is the LM's logits and the criterion is next-token
    cross-entropy on the completion tokens (labels -100 elsewhere), the loss the HF model computes from ``labels``.
    Evaluate with ``evaluate_experience`` (test items are scored, not tokenized) and give the template an evaluator
    without accuracy metrics (``EvaluationPlugin(loss_metrics(epoch=True), loggers=[...])``): Avalanche's accuracy
    compares class predictions with class targets.
    """

    @property
    def mb_x(self):
        return self.mbatch["input_ids"]

    @property
    def mb_y(self):
        return self.mbatch["labels"]

    @property
    def mb_task_id(self):
        return self.mbatch["targets_task_labels"]

    def _unpack_minibatch(self):
        if not isinstance(self.mbatch, dict) or "input_ids" not in self.mbatch:
            raise ContinualError("CausalLMProblem trains on tokenized training experiences: build the benchmark with "
                                 "to_avalanche(stream, tokenizer)")
        self.mbatch = {key: value.to(self.device) for key, value in self.mbatch.items()}

    def forward(self):
        return self.model(input_ids=self.mbatch["input_ids"], attention_mask=self.mbatch["attention_mask"]).logits

    def criterion(self):
        logits, labels = self.mb_output[:, :-1], self.mb_y[:, 1:]  # token t predicts token t+1
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


def evaluate_experience(model, tokenizer, experience, batch_size: int = 64) -> float:
    """Accuracy on a test experience, scored as our runner scores a task: the candidate with the highest summed
    log-probability after the prompt is the answer."""
    from continual.scoring import score_candidates

    items = [experience.dataset[i] for i in range(len(experience.dataset))]
    if not items or "candidates" not in items[0]:
        raise ContinualError("evaluate_experience needs a test experience (items with prompt, candidates, label); "
                             "training experiences have no candidates")
    scores = score_candidates(model, tokenizer, [x["prompt"] for x in items], [x["candidates"] for x in items],
                              batch_size=batch_size)
    return scores.accuracy([x["label"] for x in items])


# --------------------------------------------------------------------------------- metrics through Avalanche

def _examples_for(scores: np.ndarray, limit: int = 1000) -> int:
    """The fewest examples n (<= limit) on which every score in ``scores`` is an exact accuracy k/n."""
    for n in range(1, limit + 1):
        if np.allclose(scores * n, np.round(scores * n), atol=1e-6):
            return n
    raise ContinualError(f"the accuracies {scores.tolist()} are not fractions of at most {limit} examples; pass "
                         "sizes= (the number of examples scored per task)")


class ScriptedClassifier(torch.nn.Module):
    """A two-class classifier that, in evaluation round r, is right on exactly the first round(R_r[j] * n_j) examples
    of task j (every target is class 1). Inputs are (task, example index) pairs. Round 0 is the base model; a plugin
    advances the round when an experience has been trained."""

    def __init__(self, rounds: np.ndarray, sizes: list[int]):
        super().__init__()
        self.right = [[torch.arange(n) < round(float(acc) * n) for acc, n in zip(row, sizes)] for row in rounds]
        self.round = 0
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the optimizer needs a parameter; lr 0 never moves it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = torch.stack([self.right[self.round][int(t)][int(i)] for t, i in x]).float()
        return torch.stack([1 - right, right], dim=1) + 0 * self.anchor


def avalanche_metrics(R, b, sizes: list[int] | None = None) -> dict:
    """Avalanche's stream metrics for accuracy matrix R (R[i, j]: task j after stage i) and base scores b.

    Runs Avalanche's standard loop -- ``Naive(..., eval_every=0)`` and ``strategy.train(exp, eval_streams=[test])``
    for each experience, which evaluates the test stream before every ``train`` call and after every experience --
    on a ``ScriptedClassifier`` whose accuracy on task j is b[j] before training and R[i, j] after experience i.
    The metrics are Avalanche's own plugin metrics, read after the last evaluation:

        acc         StreamAccuracy: correct / scored over the pooled test stream (weighted by task size)
        bwt         StreamBWT: mean over j < T of R[T, j] - R[j, j]
        forgetting  StreamForgetting: mean over j < T of R[j, j] - R[T, j]  (= -bwt; no max over stages)
        fwt         StreamForwardTransfer: mean over j >= 2 of R[j-1, j] - (score at initialisation = b[j])
        forgetting_per_task  ExperienceForgetting for every task but the last

    ``sizes`` are the numbers of examples scored per task; by default the fewest on which every entry of the task's
    column (and b) is an exact accuracy.
    """
    from avalanche.evaluation.metrics import (ExperienceForgetting, StreamAccuracy, StreamBWT, StreamForgetting,
                                              StreamForwardTransfer)
    from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
    from avalanche.training.supervised import Naive

    R, b = np.asarray(R, dtype=float), np.asarray(b, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 2 or b.shape != (len(R),):
        raise ContinualError(f"avalanche_metrics needs a square matrix of at least 2 tasks and one base score per "
                             f"task, got shapes {R.shape} and {b.shape}")
    T = len(R)
    rounds = np.vstack([b, R])
    sizes = list(sizes) if sizes is not None else [_examples_for(rounds[:, j]) for j in range(T)]
    counts = rounds * np.asarray(sizes if len(sizes) == T else [0] * T, dtype=float)
    if len(sizes) != T or any(n < 1 or n != int(n) for n in sizes) or not np.allclose(counts, np.round(counts),
                                                                                        atol=1e-6):
        raise ContinualError(f"sizes {sizes} do not fit the matrix: give one size per task, every score k/n of its "
                             "task's n examples")
    sizes = [int(n) for n in sizes]

    def experience_data(j):
        x = torch.tensor([[j, i] for i in range(sizes[j])])
        items = torch.utils.data.TensorDataset(x, torch.ones(sizes[j], dtype=torch.long))
        return AvalancheDataset([items], data_attributes=[TaskLabels([j] * sizes[j]),
                                                          DataAttribute([1] * sizes[j], "targets")])

    data = [experience_data(j) for j in range(T)]
    benchmark = with_task_labels(benchmark_from_datasets(train=data, test=data))
    model = ScriptedClassifier(rounds, sizes)

    class Trained(SupervisedPlugin):
        """The scripted model's 'training': after experience i it answers as row i of R."""
        def after_training_exp(self, strategy, **kwargs):
            model.round += 1

    per_task = ExperienceForgetting()
    evaluator = EvaluationPlugin(StreamAccuracy(), StreamBWT(), StreamForgetting(), StreamForwardTransfer(),
                                 per_task, loggers=[])
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=max(sizes),
                     eval_mb_size=max(sizes), evaluator=evaluator, eval_every=0, plugins=[Trained()])
    for experience in benchmark.train_stream:
        strategy.train(experience, eval_streams=[benchmark.test_stream])
    last = evaluator.get_last_metrics()

    def stream_metric(name):  # Avalanche appends the last experience's task label to some names (".../Task002")
        prefix = f"{name}/eval_phase/test_stream"
        return float(next(v for k, v in last.items() if k == prefix or k.startswith(prefix + "/")))

    return {"acc": stream_metric("Top1_Acc_Stream"), "bwt": stream_metric("StreamBWT"),
            "forgetting": stream_metric("StreamForgetting"), "fwt": stream_metric("StreamForwardTransfer"),
            "forgetting_per_task": {j: float(v) for j, v in sorted(per_task.result().items())},
            "sizes": sizes}
