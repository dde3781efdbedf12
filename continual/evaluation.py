"""Score every task of a stream after a stage: one row per (task, split).

Choice tasks: accuracy of the best candidate by summed log-probability (``accuracy``) and by mean log-probability
per token (``accuracy_norm``). In a class-incremental stream the candidates of task j after stage i are the labels
of tasks 0..max(i, j) (``Stream.label_space``; i = -1 for the base model): the model must tell task j's classes
apart from every class it has been taught so far, and from the task's own classes before it is trained on them.

Generation tasks: ``accuracy`` holds the mean ROUGE-L F1 of greedy generations against the references (this is
the value in the accuracy matrix, a score in [0, 1]); ``ref_loglik`` the mean per-token log-likelihood of the
references. ``metric`` says which of the two kinds a row is. Generations stop at a newline, or after the split's
longest reference plus SLACK_TOKENS tokens (at most MAX_NEW_TOKENS): a longer answer could only lower precision.

With ``predictions=True`` the same pass also returns every example's answer (the runner asks for it after the last
stage: predictions.csv, what the final model believes):

  after, task, split, index, prompt, label, predicted, correct, label_index, predicted_index, score

``label`` and ``predicted`` are answer texts (choice: candidates, stripped; generation: the reference and the
generation), ``*_index`` the candidates' positions (empty for generation), ``score`` the example's ROUGE-L F1
(generation; empty for choice).
"""

from __future__ import annotations

import math

from datasets import Dataset

from continual.generation import generate_greedy, reference_loglik, rouge_l
from continual.scoring import score_candidates

MAX_NEW_TOKENS = 48  # generated tokens per answer at most: instruction references are cut to 40 words
SLACK_TOKENS = 16  # and at most this many more than the split's longest reference


def capped(dataset: Dataset, cap: int) -> Dataset:
    """The first ``cap`` examples (splits are shuffled when built), or all when cap is 0."""
    return dataset.select(range(min(cap, len(dataset)))) if cap else dataset


def relabel(ds: Dataset, space: list[str]) -> tuple[list[list[str]], list[int]]:
    """Candidates and gold indices of a choice split over a label space that contains every task label."""
    gold = [cands[label] for cands, label in zip(ds["candidates"], ds["label"])]
    return [space] * len(ds), [space.index(g) for g in gold]


PREDICTION_COLUMNS = ["after", "task", "split", "index", "prompt", "label", "predicted", "correct", "label_index",
                      "predicted_index", "score"]


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
                continue
            space = stream.label_space(j, stage)
            prompts, candidates, labels = [], [], {}
            for name, ds in splits.items():
                cands, gold = relabel(ds, space) if space else (ds["candidates"], ds["label"])
                prompts += ds["prompt"]
                candidates += cands
                labels[name] = gold
            scores = score_candidates(scored_model, tokenizer, prompts, candidates, batch_size=batch_size,
                                      progress=progress, desc=f"eval {task.name}")
        start = 0
        predicted = scores.predictions() if predictions else None
        for name, ds in splits.items():
            part = slice(start, start + len(ds))
            if predictions:
                cands = candidates[part]
                answers += [{"after": after, "task": task.name, "split": name, "index": i, "prompt": p,
                             "label": c[y].strip(), "predicted": c[k].strip(), "correct": bool(k == y),
                             "label_index": int(y), "predicted_index": int(k), "score": math.nan}
                            for i, (p, c, y, k) in enumerate(zip(ds["prompt"], cands, labels[name],
                                                                 predicted[part]))]
            start += len(ds)
            sub = type(scores)(scores.logprob[part], scores.n_tokens[part])
            rows.append({"after": after, "task": task.name, "split": name, "metric": "accuracy",
                         "accuracy": sub.accuracy(labels[name]),
                         "accuracy_norm": sub.accuracy(labels[name], normalise=True), "ref_loglik": math.nan,
                         "n_labels": len(space) if space else len(ds[0]["candidates"]) if len(ds) else 0,
                         "n": len(ds)})
    return (rows, answers) if predictions else rows


def _generation_rows(model, tokenizer, task, splits, after, batch_size, progress, answers=None) -> list[dict]:
    rows = []
    for name, ds in splits.items():
        prompts, references = ds["prompt"], ds["reference"]
        longest = max((len(tokenizer(" " + r)["input_ids"]) for r in references), default=0)
        generated = generate_greedy(model, tokenizer, prompts, min(MAX_NEW_TOKENS, longest + SLACK_TOKENS),
                                    batch_size=min(batch_size, 32), progress=progress, desc=f"generate {task.name}")
        rouge = rouge_l(generated, references)
        if answers is not None:
            answers += [{"after": after, "task": task.name, "split": name, "index": i, "prompt": p, "label": r,
                         "predicted": g, "correct": None, "label_index": None, "predicted_index": None,
                         "score": float(f)}
                        for i, (p, r, g, f) in enumerate(zip(prompts, references, generated, rouge))]
        loglik = reference_loglik(model, tokenizer, prompts, references, batch_size, progress, f"eval {task.name}")
        rows.append({"after": after, "task": task.name, "split": name, "metric": "rougeL_f1",
                     "accuracy": float(rouge.mean()) if len(rouge) else math.nan, "accuracy_norm": math.nan,
                     "ref_loglik": float(loglik.mean()) if len(loglik) else math.nan, "n_labels": 0, "n": len(ds)})
    return rows
