"""Score every task of a stream: one row per (task, split) with accuracy by summed and by mean log-probability."""

from __future__ import annotations

from datasets import Dataset

from continual.scoring import score_candidates


def capped(dataset: Dataset, cap: int) -> Dataset:
    """The first ``cap`` examples (splits are shuffled when built), or all when cap is 0."""
    return dataset.select(range(min(cap, len(dataset)))) if cap else dataset


def evaluate_stream(model, tokenizer, stream, strategy, after: str, cap: int = 0, batch_size: int = 64,
                    progress: bool = False) -> list[dict]:
    """Every split of every task (past and future), each task under the strategy's evaluation model for it."""
    rows = []
    for j, task in enumerate(stream.tasks):
        splits = {name: capped(ds, cap) for name, ds in task.eval.items()}
        prompts = [p for ds in splits.values() for p in ds["prompt"]]
        candidates = [c for ds in splits.values() for c in ds["candidates"]]
        with strategy.eval_model(model, j) as scored_model:
            scores = score_candidates(scored_model, tokenizer, prompts, candidates, batch_size=batch_size,
                                      progress=progress, desc=f"eval {task.name}")
        start = 0
        for name, ds in splits.items():
            part = slice(start, start + len(ds))
            start += len(ds)
            labels = ds["label"]
            sub = type(scores)(scores.logprob[part], scores.n_tokens[part])
            rows.append({"after": after, "task": task.name, "split": name, "accuracy": sub.accuracy(labels),
                         "accuracy_norm": sub.accuracy(labels, normalise=True), "n": len(ds)})
    return rows
