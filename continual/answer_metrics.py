"""Scores of generated answers against references, one number per example in [0, 1], as the papers compute them.

  exact_match      the answer equals the reference, both stripped and case-folded (O-LoRA / TRACE
                   classification tasks: the generated label)
  letter           the first A-E letter of the answer equals the reference's (TRACE ScienceQA: the chosen option;
                   the reference also carries a rationale)
  number           the first number in the answer equals the reference's (TRACE NumGLUE), compared as numbers
  rougeL_f1        ROUGE-L F1 (Lin 2004; the rouge_score package, Porter-stemmed) (TRACE MeetingBank)
  sari             SARI (Xu et al. 2016), needing the source text: the mean over 1- to 4-grams of the F1 of kept
                   n-grams, the precision of deleted ones and the F1 of added ones, on sacrebleu's 13a tokens,
                   lower-cased (as Hugging Face evaluate's "sari", which TRACE uses for 20Minuten); here / 100
  edit_similarity  rapidfuzz's fuzz.ratio / 100 (the normalised Levenshtein similarity; TRACE's Py150 metric,
                   fuzzywuzzy's ratio)

Each is a maintained package's computation where one installs from pip and runs offline (rouge_score, sacrebleu's
tokenizer, rapidfuzz); SARI's n-gram arithmetic is written here to the definition and tested against the worked
example Hugging Face evaluate documents.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

METRICS = ("exact_match", "letter", "number", "rougeL_f1", "sari", "edit_similarity")
TITLES = {"exact_match": "exact match", "letter": "answer letter", "number": "answer number",
          "rougeL_f1": "ROUGE-L F1", "sari": "SARI", "edit_similarity": "edit similarity"}


def normalise(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def exact_match(predictions: list[str], references: list[str]) -> np.ndarray:
    return np.array([float(normalise(p) == normalise(r)) for p, r in zip(predictions, references)])


def _letter(text: str) -> str | None:
    found = re.search(r"\b([A-E])\b", str(text))
    return found.group(1) if found else None


def letter(predictions: list[str], references: list[str]) -> np.ndarray:
    return np.array([float(_letter(p) is not None and _letter(p) == _letter(r))
                     for p, r in zip(predictions, references)])


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _number(text: str) -> float | None:
    found = _NUMBER.search(str(text))
    return float(found.group(0).replace(",", "")) if found else None


def number(predictions: list[str], references: list[str]) -> np.ndarray:
    out = []
    for p, r in zip(predictions, references):
        a, b = _number(p), _number(r)
        out.append(float(a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))))
    return np.array(out)


_rouge = None


def rougeL_f1(predictions: list[str], references: list[str]) -> np.ndarray:  # noqa: N802 - the metric's name
    global _rouge
    if _rouge is None:
        from rouge_score import rouge_scorer
        _rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([_rouge.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)],
                    dtype=np.float64)


def edit_similarity(predictions: list[str], references: list[str]) -> np.ndarray:
    from rapidfuzz import fuzz
    return np.array([fuzz.ratio(str(p), str(r)) / 100 for p, r in zip(predictions, references)])


# ---------------------------------------------------------------------------------------------------------- SARI

def _ngrams(tokens: list[str], n: int) -> list[str]:
    return [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _sari_ngram(source: list[str], candidate: list[str], references: list[list[str]]) -> tuple[float, float, float]:
    """(keep F1, deletion precision, addition F1) of one n-gram order; 0/0 counts as 1 (an exact match scores
    high), as in Hugging Face evaluate's SARI."""
    n_refs = len(references)
    ref_counts = Counter(g for ref in references for g in ref)
    src_rep = Counter({g: c * n_refs for g, c in Counter(source).items()})
    cand_rep = Counter({g: c * n_refs for g, c in Counter(candidate).items()})

    keep = src_rep & cand_rep
    keep_good = keep & ref_counts
    keep_all = src_rep & ref_counts
    keep_p = sum(keep_good[g] / keep[g] for g in keep) / len(keep) if keep else 1.0
    keep_r = sum(keep_good[g] for g in keep) / sum(keep_all.values()) if keep_all else 1.0
    keep_f = 2 * keep_p * keep_r / (keep_p + keep_r) if keep_p + keep_r > 0 else 0.0

    delete = src_rep - cand_rep
    delete_good = delete - ref_counts
    del_p = sum(delete_good[g] / delete[g] for g in delete) / len(delete) if delete else 1.0

    added = set(cand_rep) - set(src_rep)
    added_good = added & set(ref_counts)
    added_all = set(ref_counts) - set(src_rep)
    add_p = len(added_good) / len(added) if added else 1.0
    add_r = len(added_good) / len(added_all) if added_all else 1.0
    add_f = 2 * add_p * add_r / (add_p + add_r) if add_p + add_r > 0 else 0.0
    return keep_f, del_p, add_f


def _tokens(text: str) -> list[str]:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    return Tokenizer13a()(str(text).lower()).split(" ")


def sari_one(source: str, prediction: str, references: list[str]) -> float:
    src, cand = _tokens(source), _tokens(prediction)
    refs = [_tokens(r) for r in references]
    parts = [_sari_ngram(_ngrams(src, n), _ngrams(cand, n), [_ngrams(r, n) for r in refs]) for n in range(1, 5)]
    keep, delete, add = (sum(p[k] for p in parts) / 4 for k in range(3))
    return (keep + delete + add) / 3


def sari(predictions: list[str], references: list[str], sources: list[str]) -> np.ndarray:
    """SARI of each prediction against its reference (a list of references also works) given its source."""
    return np.array([sari_one(s, p, r if isinstance(r, list) else [r])
                     for p, r, s in zip(predictions, references, sources)])


def score(metric: str, predictions: list[str], references: list[str], sources: list[str] | None = None) -> np.ndarray:
    """Per-example scores of ``metric`` (one of METRICS)."""
    if metric == "sari":
        return sari(predictions, references, sources or [""] * len(predictions))
    return {"exact_match": exact_match, "letter": letter, "number": number, "rougeL_f1": rougeL_f1,
            "edit_similarity": edit_similarity}[metric](predictions, references)
