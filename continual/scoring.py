"""Exact, batched log-probability scoring of candidate answers.

A candidate's tokens are tokenize(prompt + candidate) minus the longest prefix it shares with tokenize(prompt):
when BPE merges across the boundary (the prompt's last token changes), the merged token belongs to the candidate
and the shorter common prefix is the context. The candidate's score is the sum of its tokens' log-probabilities
given everything before them; a length-normalised score (the mean per token) is kept beside it.

Two ways to batch the forward passes, equal within float noise:

- rows: one right-padded row per distinct (context + all-but-last candidate token) sequence, deduplicated across
  candidates and examples, so the two single-token answers of a facts prompt cost one row, not two;
- shared prefix (default when an example's candidates need different rows, e.g. multi-token labels or cloze
  answers): the prefix those rows share runs once, and every candidate continues from its key/value cache.

Causal models give the same log-probs at non-pad positions as they would unpadded.
"""

from __future__ import annotations

import copy
import inspect
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
                     progress: bool = False, desc: str = "scoring", share_prompt: bool = True) -> CandidateScores:
    """Summed log-probability of every candidate continuation of every prompt, in batched forward passes.

    With ``share_prompt``, an example whose candidates need different rows (multi-token candidates) runs the part
    its rows share once and continues every candidate from that prefix's key/value cache; the scores equal the
    row-per-candidate path's within float noise. ``share_prompt=False`` gives one full row per candidate.
    """
    if len(prompts) != len(candidates):
        raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
    # per example, per candidate: (row = context + all but the last candidate token, first scored position, targets)
    plans = []
    for prompt, cands in zip(prompts, candidates):
        per = []
        for cand in cands:
            ctx, cont = split_continuation(tokenizer, prompt, cand)
            per.append((tuple(ctx + cont[:-1]), len(ctx) - 1, cont))
        plans.append(per)
    shared = [i for i, per in enumerate(plans)
              if share_prompt and len({row for row, _, _ in per}) > 1 and _common_prefix([r for r, _, _ in per])]
    logprob: list[np.ndarray | None] = [None] * len(plans)
    if shared:
        for i, lp in zip(shared, _shared_prefix_logprobs(model, [plans[i] for i in shared], batch_size, progress,
                                                         desc)):
            logprob[i] = lp
    rest = [i for i in range(len(plans)) if logprob[i] is None]
    if rest:
        for i, lp in zip(rest, _row_logprobs(model, [plans[i] for i in rest], batch_size, progress, desc)):
            logprob[i] = lp
    n_tokens = [np.array([len(cont) for _, _, cont in per]) for per in plans]
    return CandidateScores(logprob, n_tokens)


def _common_prefix(rows: list[tuple[int, ...]]) -> int:
    """Length of the longest prefix all rows share."""
    k = 0
    while all(len(r) > k for r in rows) and len({r[k] for r in rows}) == 1:
        k += 1
    return k


def _row_logprobs(model, plans, batch_size, progress, desc) -> list[np.ndarray]:
    """One forward row per distinct (context + candidate) sequence; rows are deduplicated across examples, so the
    two single-token answers of a facts prompt cost one row, not two."""
    rows: dict[tuple[int, ...], int] = {}
    needs = [[(rows.setdefault(row, len(rows)), p, cont) for row, p, cont in per] for per in plans]
    wanted: dict[int, dict[int, set[int]]] = {}
    for per in needs:
        for r, p, cont in per:
            for i, t in enumerate(cont):
                wanted.setdefault(r, {}).setdefault(p + i, set()).add(t)
    sequences = list(rows)
    order = sorted(range(len(sequences)), key=lambda r: -len(sequences[r]))  # similar lengths share a batch
    found: dict[tuple[int, int], dict[int, float]] = {}
    with eval_mode(model):
        # data-parallel runs: each process scores its share of the batches, then all gather
        for batch in tqdm(distributed.shard(_chunks(order, batch_size)), desc=desc, disable=not progress,
                          leave=False):
            ids, mask = _right_padded([sequences[r] for r in batch])
            picks = [(b, p, (r, p), wanted[r][p]) for b, r in enumerate(batch) for p in sorted(wanted[r])]
            device = model_device(model)
            logits, column = _logits_at(model, [p for _, p, _, _ in picks], input_ids=ids.to(device),
                                        attention_mask=mask.to(device))
            _pick(logits, [(b, column[p], key, ts) for b, p, key, ts in picks], found)
    found = distributed.gather_dict(found)
    return [np.array([sum(found[(r, p + i)][t] for i, t in enumerate(cont)) for r, p, cont in per], dtype=np.float64)
            for per in needs]


def _shared_prefix_logprobs(model, plans, batch_size, progress, desc) -> list[np.ndarray]:
    """Per example: one pass over the prefix its candidate rows share, then every row's remainder from the prefix's
    key/value cache (cache rows repeated per candidate; the prefix's right padding is masked, positions continue
    after each example's own prefix)."""
    device = model_device(model)
    prefix_len = [_common_prefix([row for row, _, _ in per]) for per in plans]
    order = sorted(range(len(plans)), key=lambda e: -prefix_len[e])
    found: dict[tuple, dict[int, float]] = {}  # (example, candidate or -1 for the prefix, position) -> {token: lp}
    with eval_mode(model):
        for batch in tqdm(distributed.shard(_chunks(order, batch_size)), desc=desc, disable=not progress,
                          leave=False):
            prefixes = [plans[e][0][0][:prefix_len[e]] for e in batch]
            ids, mask = _right_padded(prefixes)
            prefix_positions = [p + i for e in batch for _, p, cont in plans[e] for i in range(len(cont))
                                if p + i < prefix_len[e]]
            cache_arg = _cache_argument(model)
            out, column = _logits_at(model, prefix_positions, input_ids=ids.to(device),
                                     attention_mask=mask.to(device), use_cache=True, return_output=True)
            # positions inside the prefix: read from the prefix pass
            picks, rows, row_of = [], [], []
            for b, e in enumerate(batch):
                n = prefix_len[e]
                wanted: dict[int, set[int]] = {}
                for c, (row, p, cont) in enumerate(plans[e]):
                    for i, t in enumerate(cont):
                        if p + i < n:
                            wanted.setdefault(p + i, set()).add(t)
                    if len(row) > n:
                        rows.append(row[n:])
                        row_of.append((b, e, c))
                picks += [(b, column[p], (e, -1, p), ts) for p, ts in sorted(wanted.items())]
            _pick(out.logits, picks, found)
            if rows:  # the remainders, continued from the cache
                cache = getattr(out, cache_arg)
                for start in range(0, len(rows), batch_size):
                    part = slice(start, start + batch_size)
                    owners = row_of[part]
                    tail_ids, tail_mask = _right_padded(rows[part])
                    cache_part = _select_cache(cache, [b for b, _, _ in owners])
                    positions = torch.tensor([[prefix_len[e]] for _, e, _ in owners]) + torch.arange(
                        tail_ids.shape[1])
                    full_mask = torch.cat([mask[[b for b, _, _ in owners]], tail_mask], dim=1)
                    tail_picks = []
                    for k, (_, e, c) in enumerate(owners):
                        row, p, cont = plans[e][c]
                        n = prefix_len[e]
                        per_pos: dict[int, set[int]] = {}
                        for i, t in enumerate(cont):
                            if p + i >= n:
                                per_pos.setdefault(p + i, set()).add(t)
                        tail_picks += [(k, q - n, (e, c, q), ts) for q, ts in sorted(per_pos.items())]
                    logits, column = _logits_at(model, [q for _, q, _, _ in tail_picks],
                                                input_ids=tail_ids.to(device), attention_mask=full_mask.to(device),
                                                position_ids=positions.to(device), use_cache=True,
                                                **{cache_arg: cache_part})
                    _pick(logits, [(k, column[q], key, ts) for k, q, key, ts in tail_picks], found)
    found = distributed.gather_dict(found)
    result = []
    for e, per in enumerate(plans):
        n = prefix_len[e]
        result.append(np.array([sum(found[(e, -1 if p + i < n else c, p + i)][t] for i, t in enumerate(cont))
                                for c, (_, p, cont) in enumerate(per)], dtype=np.float64))
    return result


def _logits_at(model, positions: list[int], return_output: bool = False, **inputs):
    """(logits at the given sequence positions, {position: its column in those logits}), or the whole model output
    in place of the logits with ``return_output``. Models that take ``logits_to_keep`` (transformers' causal LMs)
    apply the LM head only there, the same positions for every row: with a 49k vocabulary the head over every
    position of a batch is a large share of the pass. Others compute every position."""
    keep = sorted(set(positions))
    if keep and _takes_logits_to_keep(model):
        out = model(**inputs, logits_to_keep=torch.tensor(keep, device=inputs["input_ids"].device))
        column = {p: i for i, p in enumerate(keep)}
    else:
        out = model(**inputs)
        column = {p: p for p in keep}
    return (out if return_output else out.logits), column


def _forward_parameters(model) -> set[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes them on
    try:
        return set(inspect.signature(base.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _takes_logits_to_keep(model) -> bool:
    return "logits_to_keep" in _forward_parameters(model)


def _cache_argument(model) -> str:
    """The key/value cache's name, in the forward's arguments and in its outputs: the one the model's forward names,
    else the installed transformers' (``cache`` in recent 5.x releases, ``past_key_values`` before, now a
    deprecated alias)."""
    params = _forward_parameters(model)
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    from transformers.modeling_outputs import CausalLMOutputWithPast
    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _select_cache(cache, batch_rows: list[int]):
    """A cache whose batch rows are the prefix cache's rows in the given order (repeats allowed), through the Cache
    API beam search uses (copy, then reorder_cache); the prefix cache itself stays as it is for the next group."""
    picked = copy.deepcopy(cache)
    picked.reorder_cache(torch.tensor(batch_rows))
    return picked


def _pick(logits, picks, found) -> None:
    """found[key] = {token: log-prob} for each (batch row, position, key, tokens) in picks."""
    if not picks:
        return
    rows = [b for b, _, _, _ in picks]
    positions = [p for _, p, _, _ in picks]
    logp = logits[rows, positions].float().log_softmax(-1).cpu()
    for (_, _, key, tokens), lp in zip(picks, logp):
        found.setdefault(key, {}).update({t: float(lp[t]) for t in tokens})


def _right_padded(sequences) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for b, s in enumerate(sequences):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    return ids, mask


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


class eval_mode:
    """Eval mode (no dropout) for the duration; the previous mode afterwards."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)
