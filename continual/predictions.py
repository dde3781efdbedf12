"""Per-example answers of the final model: predictions.csv, what the model believes after the last stage.

The accuracy files hold means only; error analysis and the facts relation graph need each example's answer. The
runner calls ``predict_stream`` once, after the last stage (one more scoring pass over every evaluation split, a
few seconds on a CPU for the facts stream), and writes

  predictions.csv   after, task, split, index, prompt, label, predicted, correct

with ``predicted`` the index of the best candidate by summed log-probability (the accuracy matrix's rule), each
task scored under the strategy's evaluation model for it, as in continual.evaluation.
"""

from __future__ import annotations

import pandas as pd

from continual.evaluation import capped, relabel
from continual.scoring import score_candidates

COLUMNS = ["after", "task", "split", "index", "prompt", "label", "predicted", "correct"]


def predict_stream(model, tokenizer, stream, strategy, after: str, stage: int, cap: int = 0,
                   batch_size: int = 64) -> pd.DataFrame:
    """Answers after stage ``stage`` over the same candidates as the accuracy matrix (a class-incremental task's
    label space grows with the stages). Generation tasks have no candidates and are left out."""
    rows = []
    for j, task in enumerate(stream.tasks):
        if task.kind == "generation":
            continue
        splits = {name: capped(ds, cap) for name, ds in task.eval.items()}
        space = stream.label_space(j, stage)
        relabelled = {name: relabel(ds, space) if space else (ds["candidates"], ds["label"])
                      for name, ds in splits.items()}
        prompts = [p for ds in splits.values() for p in ds["prompt"]]
        candidates = [c for cands, _ in relabelled.values() for c in cands]
        with strategy.eval_model(model, j) as scored_model:
            predicted = score_candidates(scored_model, tokenizer, prompts, candidates,
                                         batch_size=batch_size).predictions()
        k = 0
        for name, ds in splits.items():
            for i, (prompt, label) in enumerate(zip(ds["prompt"], relabelled[name][1])):
                rows.append({"after": after, "task": task.name, "split": name, "index": i, "prompt": prompt,
                             "label": int(label), "predicted": int(predicted[k]),
                             "correct": bool(predicted[k] == label)})
                k += 1
    return pd.DataFrame(rows, columns=COLUMNS)
