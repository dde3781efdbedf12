"""Exact, batched log-probability scoring of candidate answers.

A candidate's tokens are tokenize(prompt + candidate) minus the longest prefix it shares with tokenize(prompt):
when BPE merges across the boundary (the prompt's last token changes), the merged token belongs to the candidate
and the shorter common prefix is the context. The candidate's score is the sum of its tokens' log-probabilities
given everything before them; a length-normalised score (the mean per token) is kept beside it.

One forward pass serves every candidate whose context plus all-but-last tokens is the same sequence, so the two
single-token answers of a facts prompt cost one row, not two. Rows are right-padded and masked; causal models give
the same log-probs at non-pad positions as they would unpadded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from continual import distributed


def split_continuation(tokenizer, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) with context + continuation == tokenize(prompt + continuation)."""
    full = tokenizer(prompt + continuation)["input_ids"]
    head = tokenizer(prompt)["input_ids"]
    k = 0
    while k < min(len(full), len(head)) and full[k] == head[k]:
        k += 1
    if k == 0:
        raise ValueError(f"prompt {prompt!r} leaves no context token before {continuation!r}: the model needs at "
                         "least one token to condition on (use a longer prompt or a tokenizer that adds BOS)")
    # a tokenizer that appends special tokens (EOS) to both would end the continuation with them: drop those
    special = set(tokenizer.all_special_ids)
    cont = full[k:]
    while cont and cont[-1] in special and head and head[-1] == cont[-1]:
        cont = cont[:-1]
    if not cont:
        raise ValueError(f"continuation {continuation!r} adds no token after prompt {prompt!r}")
    return full[:k], cont


@dataclass
class CandidateScores:
    logprob: list[np.ndarray]  # per example: summed log-prob of each candidate
    n_tokens: list[np.ndarray]  # per example: tokens in each candidate

    def predictions(self, normalise: bool = False) -> np.ndarray:
        """Index of the best candidate per example (by summed, or by mean per-token log-prob)."""
        return np.array([int(np.argmax(lp / n if normalise else lp)) for lp, n in zip(self.logprob, self.n_tokens)])

    def accuracy(self, labels, normalise: bool = False) -> float:
        labels = np.asarray(labels)
        return float((self.predictions(normalise) == labels).mean()) if len(labels) else float("nan")


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def score_candidates(model, tokenizer, prompts: list[str], candidates: list[list[str]], batch_size: int = 64,
                     progress: bool = False, desc: str = "scoring") -> CandidateScores:
    """Summed log-probability of every candidate continuation of every prompt, in batched forward passes."""
    if len(prompts) != len(candidates):
        raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
    # Each needed log-prob is (row sequence, position, target token). Rows are deduplicated.
    rows: dict[tuple[int, ...], int] = {}
    needs: list[list[tuple[int, int, list[int]]]] = []  # per example, per candidate: (row, first position, targets)
    for prompt, cands in zip(prompts, candidates):
        per = []
        for cand in cands:
            ctx, cont = split_continuation(tokenizer, prompt, cand)
            seq = tuple(ctx + cont[:-1])
            row = rows.setdefault(seq, len(rows))
            per.append((row, len(ctx) - 1, cont))
        needs.append(per)

    sequences = list(rows)
    row_logprobs = _needed_logprobs(model, sequences, needs, batch_size, progress, desc)
    logprob, n_tokens = [], []
    for per in needs:
        logprob.append(np.array([sum(row_logprobs[(r, p + i)][t] for i, t in enumerate(cont))
                                 for r, p, cont in per], dtype=np.float64))
        n_tokens.append(np.array([len(cont) for _, _, cont in per]))
    return CandidateScores(logprob, n_tokens)


def _needed_logprobs(model, sequences, needs, batch_size, progress, desc):
    """{(row, position): {token: log-prob}} for exactly the (position, token) pairs the candidates need."""
    wanted: dict[int, dict[int, set[int]]] = {}
    for per in needs:
        for r, p, cont in per:
            for i, t in enumerate(cont):
                wanted.setdefault(r, {}).setdefault(p + i, set()).add(t)
    device = model_device(model)
    was_training = model.training
    model.eval()
    order = sorted(range(len(sequences)), key=lambda r: -len(sequences[r]))  # similar lengths share a batch
    out: dict[tuple[int, int], dict[int, float]] = {}
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches = distributed.shard(batches)  # data-parallel runs: each process scores its share, then all gather
    try:
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            width = max(len(sequences[r]) for r in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, r in enumerate(batch):
                ids[b, :len(sequences[r])] = torch.tensor(sequences[r])
                mask[b, :len(sequences[r])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            index = [(b, r, p) for b, r in enumerate(batch) for p in sorted(wanted[r])]
            picked = logits[[b for b, _, _ in index], [p for _, _, p in index]].float().log_softmax(-1).cpu()
            for (b, r, p), lp in zip(index, picked):
                out[(r, p)] = {t: float(lp[t]) for t in wanted[r][p]}
    finally:
        model.train(was_training)
    return distributed.gather_dict(out)
