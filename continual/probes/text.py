"""Windows of general English text and the model's next-token log-probabilities over them (perplexity and KL).

The text is cut into non-overlapping windows of ``window`` tokens; each window predicts all but its first token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from continual.errors import ContinualError
from continual.options import Options, option
from continual.probes.base import Probe
from continual.probes.general_text import general_text
from continual.scoring import eval_mode, model_device


@dataclass
class TextOptions(Options):
    """What every probe over windows of text is set with."""
    tokens: int = option(2048, "predicted tokens of text", low=1)
    window: int = option(256, "tokens per window", low=2)
    batch_size: int = option(4, "windows per forward pass", low=1)
    text_file: str = option("", "a UTF-8 text file to measure on instead of the general text",
                            shown_default="the held-out general text (--general-text)")


class TextProbe(Probe):
    """A probe over windows of held-out text: ``setup`` cuts them (``full_windows``: keep the last window whole)."""
    Config = TextOptions
    full_windows = False

    def setup(self, ctx):
        text = probe_text(self.config.text_file, ctx.general_text)
        self.windows = text_windows(ctx.tokenizer, text, self.config.tokens, self.config.window,
                                    trim_last=not self.full_windows)


def probe_text(text_file: str, source: str) -> str:
    """The text a probe measures on: a user's file, or the held-out split of the general text."""
    if not text_file:
        return general_text(source, "probe")
    try:
        return Path(text_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContinualError(f"probe text file '{text_file}' cannot be read: {exc}") from None


def text_windows(tokenizer, text: str, predictions: int, window: int, trim_last: bool = True) -> list[list[int]]:
    """Windows of ``window`` tokens holding ``predictions`` predicted tokens (or all the text has). ``trim_last``
    cuts the last window to exactly that many; without it every window keeps its full length, so that a caller
    reading only the first positions of the last one computes them in a full window's context."""
    n_windows = math.ceil(predictions / (window - 1))
    needed = n_windows * window
    ids = tokenizer(text[:needed * 16])["input_ids"][:needed]  # no tokenizer makes a token of 16+ characters
    windows = [ids[i:i + window] for i in range(0, len(ids), window) if len(ids[i:i + window]) > 1]
    out, left = [], predictions
    for w in windows:
        if left <= 0:
            break
        if trim_last:
            w = w[:left + 1]
        out.append(w)
        left -= len(w) - 1
    if not out:
        raise ContinualError("the probe text is too short to score: it tokenizes to fewer than 2 tokens")
    return out


@torch.inference_mode()
def window_logprobs(model, windows: list[list[int]], batch_size: int):
    """Yield (window, log-probabilities of its next tokens: [len(window) - 1, vocab]) for every window, batched."""
    device = model_device(model)
    with eval_mode(model):
        for i in range(0, len(windows), batch_size):
            batch = windows[i:i + batch_size]
            width = max(map(len, batch))
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, w in enumerate(batch):
                ids[b, :len(w)], mask[b, :len(w)] = torch.tensor(w), 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            for b, w in enumerate(batch):
                yield w, logits[b, :len(w) - 1].log_softmax(-1)
