"""Continual-learning metrics as pure functions of the accuracy matrix.

R is T x T with R[i, j] = score on task j after training stage i (0-based here; the papers count from 1).
b[j] is the pretrained base model's score on task j before any stage.

  average_accuracy   ACC, GEM (Lopez-Paz & Ranzato 2017): mean of the last row.
  backward_transfer  BWT, GEM: mean over j < T-1 of R[T-1, j] - R[j, j]. Negative = forgetting.
  forward_transfer   FWT, GEM-style: mean over j >= 1 of R[j-1, j] - b[j], with b the pretrained base model
                     (GEM uses a randomly initialised model there; ours is the model before any stage).
  forgetting         Chaudhry et al. 2018: mean over j < T-1 of max over l < T-1 of R[l, j] - R[T-1, j]
                     (the max runs over every stage before the last, including those before task j was trained,
                     and never over the base row).
  retention          (probe score - chance) / (base score - chance): the share of an above-chance capability left.
With one task, BWT, FWT and forgetting are undefined and return NaN.
"""

from __future__ import annotations

import math

import numpy as np

CONVENTIONS = {
    "acc": "GEM ACC (Lopez-Paz & Ranzato 2017): mean over tasks of the score after the last stage",
    "bwt": "GEM BWT: mean over j<T of R[T,j] - R[j,j] (negative = forgetting)",
    "fwt": "GEM-style FWT: mean over j>=2 of R[j-1,j] - b[j], b = the pretrained base model's score "
           "(GEM uses a random-init model)",
    "forgetting": "Chaudhry et al. 2018: mean over j<T of max over stages l<T of R[l,j] - R[T,j] "
                  "(base row excluded)",
    "op": "TRACE OP (Wang et al. 2023): mean over tasks of the score after the last stage; the same number as acc",
    "bwt_trace": "TRACE BWT: mean over j<T of R[T,j] - R[j,j]; the same definition (and number) as GEM's bwt",
    "aa": "O-LoRA AA (Wang et al. 2023): average accuracy over tasks after the last task; the same number as acc",
}


def _square(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be square and non-empty, got shape {R.shape}")
    return R


def average_accuracy(R) -> float:
    R = _square(R)
    return float(R[-1].mean())


def backward_transfer(R) -> float:
    R = _square(R)
    T = len(R)
    if T < 2:
        return float("nan")
    return float(np.mean([R[T - 1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R, b) -> float:
    R, b = _square(R), np.asarray(b, dtype=float)
    T = len(R)
    if b.shape != (T,):
        raise ValueError(f"the base scores must have one entry per task ({T}), got shape {b.shape}")
    if T < 2:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def forgetting(R) -> float:
    R = _square(R)
    T = len(R)
    if T < 2:
        return float("nan")
    return float(np.mean([R[:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]))


def retention(cloze_final: float, cloze_base: float, chance: float, n_items: int | None = None) -> float:
    """Share of the base model's above-chance cloze accuracy that is left.

    NaN when the base is not above chance, or, given the number of items, not clearly so: less than two binomial
    standard errors of a chance-level scorer (sqrt(chance * (1 - chance) / n)) above it. A ratio over a
    denominator inside the noise would be noise (a random-init model scores chance plus a coin flip or two).
    """
    above = cloze_base - chance
    floor = 2 * math.sqrt(chance * (1 - chance) / n_items) if n_items else 0.0
    return float((cloze_final - chance) / above) if above > floor and above > 0 else float("nan")


def summarise(R, b) -> dict[str, float]:
    """All matrix metrics at once, keyed as in summary.json."""
    acc, bwt = average_accuracy(R), backward_transfer(R)
    return {"acc": acc, "bwt": bwt, "fwt": forward_transfer(R, b), "forgetting": forgetting(R), "op": acc,
            "bwt_trace": bwt, "aa": acc}
