"""Free-text answers: batched greedy (or sampled) generation, and the references' log-likelihood.

Prompts are left-padded so that every row of a batch ends at the same position and generation continues all rows
in step (transformers' ``generate`` with an attention mask). Decoding is greedy (deterministic) and capped at
``max_new_tokens``; a generation ends at the model's end-of-sequence token or its first newline (instruction tasks
train responses as one line followed by a newline).

The answers are scored by continual.answer_metrics (ROUGE-L F1, exact match, SARI, ...). The mean per-token
log-likelihood of the reference given the prompt is computed with the batched scorer beside it.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from continual.scoring import model_device, score_candidates


@torch.inference_mode()
def generate_greedy(model, tokenizer, prompts: list[str], max_new_tokens: int = 48, batch_size: int = 16,
                    progress: bool = False, desc: str = "generating", temperature: float = 0.0) -> list[str]:
    """The greedy continuation of every prompt up to its first newline, without surrounding spaces; with
    ``temperature`` > 0 sampled instead (from torch's global generator: seed it for a repeatable draw)."""
    if not prompts:
        return []
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # left padding: the prompt ends where generation starts
                ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]):] = 1
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else \
                {"do_sample": False}
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **sampling,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad,
                                 eos_token_id=tokenizer.eos_token_id, num_beams=1,
                                 stop_strings=["\n"], tokenizer=tokenizer)  # a row stops at its newline
            for row, i in enumerate(batch):
                text = tokenizer.decode(out[row, width:], skip_special_tokens=True)
                outputs[i] = (text.splitlines() or [""])[0].strip()  # any line break ends the answer
    finally:
        model.train(was_training)
    return outputs


def reference_loglik(model, tokenizer, prompts: list[str], references: list[str], batch_size: int = 64,
                     progress: bool = False, desc: str = "reference log-likelihood") -> np.ndarray:
    """Mean per-token log-probability of each reference (with its leading space) after its prompt."""
    scores = score_candidates(model, tokenizer, prompts, [[" " + r] for r in references], batch_size=batch_size,
                              progress=progress, desc=desc)
    return np.array([lp[0] / n[0] for lp, n in zip(scores.logprob, scores.n_tokens)], dtype=np.float64)
