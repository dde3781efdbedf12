"""What a run writes to the terminal besides its tables: progress bars, and the warnings raised while they are drawn.

A line written to stderr while a bar is drawn lands inside the bar (a FutureWarning from trl spliced into a DPO
stage's step bar, the same deprecation repeated once per stage). While a run shows bars, ``routed_output`` writes
each distinct warning once, as one line above the bars (tqdm.write), and sends the libraries' own log records the
same way. Without bars nothing changes: warnings and logging behave as Python configures them.
"""

from __future__ import annotations

import logging
import sys
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tqdm.auto import tqdm

# the libraries a run drives whose loggers write to stderr on their own
LIBRARY_LOGGERS = ("transformers", "datasets", "peft", "trl", "accelerate", "torch")


def warning_line(message, category, filename, lineno) -> str:
    """``warning: <Category> (<module file>:<line>): <first line of the message>``: one line, no source echo."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else ""
    return f"warning: {category.__name__} ({Path(filename).name}:{lineno}): {text}"


@contextmanager
def routed_output(enabled: bool = True):
    """While a run draws bars: each distinct (category, message) warning once, above the bars; the libraries' log
    records above the bars too. The filters in force are kept (a test's ``error`` filter still raises)."""
    if not enabled:
        yield
        return
    seen: set[tuple[type, str]] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        key = (category, str(message))
        if key not in seen:  # once per run, however many stages raise it
            seen.add(key)
            tqdm.write(warning_line(message, category, filename, lineno), file=sys.stderr)

    from tqdm.contrib.logging import logging_redirect_tqdm
    with ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())  # restores showwarning and the filters afterwards
        warnings.showwarning = show
        # only loggers that print on their own: a handler added to the others would print their records twice
        # (once here, once by whatever the user's root logger does with them)
        printing = [logging.getLogger(n) for n in LIBRARY_LOGGERS if any(_to_console(h) for h in
                                                                         logging.getLogger(n).handlers)]
        stack.enter_context(logging_redirect_tqdm(printing))
        yield


def _to_console(handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)


def model_label(after: str) -> str:
    """Which model a bar scores or probes: the base model, or the model after a stage."""
    return "base model" if after == "base" else f"after {after}"


def stage_bar_label(index: int, task: str) -> str:
    """The training bar's label: which stage, which task."""
    return f"stage {index + 1}: train {task}"
