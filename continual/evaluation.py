"""Score every task of a stream after a stage: one row per (task, split).

Choice tasks: accuracy of the best candidate by summed log-probability (``logprob_accuracy``) and by mean
log-probability per token (``accuracy_norm``). In a class-incremental stream the candidates of task j after stage i
are the labels of tasks 0..max(i, j) (``Stream.label_space``; i = -1 for the base model): the model must tell task
j's classes apart from every class it has been taught so far, and from the task's own classes before it is trained
on them. A choice task with an ``answer_metric`` (the benchmark streams: exact match, as the papers score) also
generates its greedy answer and scores it (``answer_score``).

Generation tasks: ``answer_score`` holds the mean of the task's ``answer_metric`` (ROUGE-L F1 unless it names
another: continual.answer_metrics) of greedy generations against the references, a score in [0, 1];
``ref_loglik`` the mean per-token log-likelihood of the references.

``accuracy`` is the value in the accuracy matrix (the task's ``scored_by`` metric, which ``metric`` names):
``logprob_accuracy`` or ``answer_score``; ``stderr`` its standard error over the split's ``n`` examples
(``standard_error``: binomial for a 0/1 score, the sample standard deviation over sqrt(n) for a graded one).
Generations stop at a line break, or after the split's longest reference plus SLACK_TOKENS tokens (a choice task's:
its longest label plus LABEL_SLACK_TOKENS; at most MAX_NEW_TOKENS, or the task's ``max_answer_tokens``): a longer
answer could only lower precision.

With ``predictions=True`` the same pass also returns every example's answer (the runner asks for it after the last
stage: predictions.csv, what the final model believes):

  after, task, split, index, prompt, label, predicted, correct, label_index, predicted_index, score

``label`` and ``predicted`` are answer texts (choice: candidates, stripped; generation: the reference and the
generation), ``*_index`` the candidates' positions (empty for generation), ``score`` the example's answer metric
(generation; empty for choice).
"""

from __future__ import annotations

import math

import numpy as np
from datasets import Dataset

from continual.answer_metrics import score as answer_score
from continual.console import model_label
from continual.generation import generate_greedy, reference_loglik
from continual.scoring import score_candidates

MAX_NEW_TOKENS = 48  # generated tokens per answer at most: instruction references are cut to 40 words
SLACK_TOKENS = 16  # and at most this many more than the split's longest reference
LABEL_SLACK_TOKENS = 4  # a choice task's generated answer: the longest label's tokens and this many more
PREDICTION_COLUMNS = ["after", "task", "split", "index", "prompt", "label", "predicted", "correct", "label_index",
                      "predicted_index", "score"]


def standard_error(per_example) -> float:
    """Standard error of a mean over examples: sqrt(p(1 - p) / n) when every example scores 0 or 1 (an accuracy:
    the binomial standard error), else the sample standard deviation (ddof 1) over sqrt(n); NaN when undefined."""
    values = np.asarray(per_example, dtype=float)
    n = len(values)
    if n == 0:
        return math.nan
    if np.isin(values, (0.0, 1.0)).all():
        p = values.mean()
        return float(math.sqrt(p * (1 - p) / n))
    return float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def capped(dataset: Dataset, cap: int) -> Dataset:
    """The first ``cap`` examples (splits are shuffled when built), or all when cap is 0."""
    return dataset.select(range(min(cap, len(dataset)))) if cap else dataset


def relabel(ds: Dataset, space: list[str]) -> tuple[list[list[str]], list[int]]:
    """Candidates and gold indices of a choice split over a label space that contains every task label."""
    gold = [cands[label] for cands, label in zip(ds["candidates"], ds["label"])]
    return [space] * len(ds), [space.index(g) for g in gold]


def answer_budget(tokenizer, task, references: list[str]) -> int:
    """New tokens a greedy answer may take: the longest reference's plus some slack, capped."""
    longest = max((len(tokenizer(" " + r)["input_ids"]) for r in set(references)), default=0)
    cap = task.max_answer_tokens or MAX_NEW_TOKENS
    slack = LABEL_SLACK_TOKENS if task.kind == "choice" else SLACK_TOKENS
    return max(1, min(cap, longest + slack))


def evaluate_stream(model, tokenizer, stream, strategy, after: str, stage: int, cap: int = 0, batch_size: int = 64,
                    progress: bool = False, predictions: bool = False):
    """Every split of every task (past and future) after stage ``stage`` (-1: the base model), each task under the
    strategy's evaluation model for it: the score rows, or (rows, per-example predictions) with ``predictions``."""
    rows, answers = [], []
    for j, task in enumerate(stream.tasks):
        splits = {name: capped(ds, cap) for name, ds in task.eval.items()}
        with strategy.eval_model(model, j) as scored_model:
            if task.kind == "generation":
                rows += _generation_rows(scored_model, tokenizer, task, splits, after, batch_size, progress,
                                         answers if predictions else None)
            else:
                rows += _choice_rows(scored_model, tokenizer, task, splits, after, stream.label_space(j, stage),
                                     batch_size, progress, answers if predictions else None)
    return (rows, answers) if predictions else rows


def _choice_rows(model, tokenizer, task, splits, after, space, batch_size, progress, answers) -> list[dict]:
    prompts, candidates, labels = [], [], {}
    for name, ds in splits.items():
        cands, gold = relabel(ds, space) if space else (ds["candidates"], ds["label"])
        prompts += ds["prompt"]
        candidates += cands
        labels[name] = gold
    scores = score_candidates(model, tokenizer, prompts, candidates, batch_size=batch_size, progress=progress,
                              desc=f"{model_label(after)}: eval {task.name}")
    predicted = scores.predictions()
    generated = None
    if task.answer_metric:  # the papers' way beside ours: the greedy answer, scored against the gold label text
        golds = [c[y].strip() for c, y in zip(candidates, (y for gold in labels.values() for y in gold))]
        generated = generate_greedy(model, tokenizer, prompts, answer_budget(tokenizer, task, golds),
                                    batch_size=min(batch_size, 32), progress=progress,
                                    desc=f"{model_label(after)}: answer {task.name}")
        generated_scores = answer_score(task.answer_metric, generated, golds)
    rows, start = [], 0
    for name, ds in splits.items():
        part = slice(start, start + len(ds))
        start += len(ds)
        sub = type(scores)(scores.logprob[part], scores.n_tokens[part])
        logprob = sub.accuracy(labels[name])
        answer = float(generated_scores[part].mean()) if generated is not None and len(ds) else math.nan
        if answers is not None:
            cands = candidates[part]
            answers += [{"after": after, "task": task.name, "split": name, "index": i, "prompt": p,
                         "label": c[y].strip(), "predicted": c[k].strip() if generated is None else generated[part][i],
                         "correct": bool(k == y), "label_index": int(y), "predicted_index": int(k),
                         "score": math.nan if generated is None else float(generated_scores[part][i])}
                        for i, (p, c, y, k) in enumerate(zip(ds["prompt"], cands, labels[name], predicted[part]))]
        per_example = (generated_scores[part] if task.scored_by != "accuracy" else
                       np.asarray(predicted[part]) == np.asarray(labels[name]))
        rows.append({"after": after, "task": task.name, "split": name, "metric": task.scored_by,
                     "accuracy": answer if task.scored_by != "accuracy" else logprob,
                     "stderr": standard_error(per_example),
                     "accuracy_norm": sub.accuracy(labels[name], normalise=True), "logprob_accuracy": logprob,
                     "answer_score": answer, "ref_loglik": math.nan,
                     "n_labels": len(space) if space else len(ds[0]["candidates"]) if len(ds) else 0, "n": len(ds)})
    return rows


def _generation_rows(model, tokenizer, task, splits, after, batch_size, progress, answers=None) -> list[dict]:
    rows = []
    metric = task.scored_by
    for name, ds in splits.items():
        prompts, references = ds["prompt"], ds["reference"]
        generated = generate_greedy(model, tokenizer, prompts, answer_budget(tokenizer, task, references),
                                    batch_size=min(batch_size, 32), progress=progress,
                                    desc=f"{model_label(after)}: generate {task.name}")
        sources = ds["source"] if "source" in ds.column_names else None
        scored = answer_score(metric, generated, references, sources) if len(ds) else np.array([])
        loglik = reference_loglik(model, tokenizer, prompts, references, batch_size, progress,
                                  f"{model_label(after)}: eval {task.name}")
        if answers is not None:
            answers += [{"after": after, "task": task.name, "split": name, "index": i, "prompt": p, "label": r,
                         "predicted": g, "correct": None, "label_index": None, "predicted_index": None,
                         "score": float(f)}
                        for i, (p, r, g, f) in enumerate(zip(prompts, references, generated, scored))]
        mean = float(scored.mean()) if len(scored) else math.nan
        rows.append({"after": after, "task": task.name, "split": name, "metric": metric, "accuracy": mean,
                     "stderr": standard_error(scored), "accuracy_norm": math.nan, "logprob_accuracy": math.nan,
                     "answer_score": mean,
                     "ref_loglik": float(loglik.mean()) if len(loglik) else math.nan, "n_labels": 0, "n": len(ds)})
    return rows
