"""Data of the continual_cloze lm-eval task: the cloze items of continual/probes/cloze.yaml, read in place."""

from pathlib import Path

import datasets
import yaml

CLOZE = Path(__file__).resolve().parents[1] / "cloze.yaml"


def cloze_items(**kwargs) -> datasets.DatasetDict:
    items = yaml.safe_load(CLOZE.read_text(encoding="utf-8"))["items"]
    rows = [{"prompt": it["prompt"], "choices": [it["answer"], *it["distractors"]]} for it in items]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
