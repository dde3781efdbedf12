"""continual: measure, and limit, what a causal language model forgets when fine-tuned on one task after another.

Notebook use::

    import continual
    result = continual.run(stream="facts", strategy="naive", model="tiny", out="runs/demo")
    result.matrix          # accuracy matrix (pandas), row "base" first
    result.summary["bwt"]  # metrics, with their conventions in result.summary["conventions"]
    continual.compare_table(["runs"])  # strategy x metric DataFrame over run directories (mean, 95% CI, n)
"""

from continual.compare import compare_table
from continual.config import RunConfig
from continual.errors import ContinualError
from continual.metrics import average_accuracy, backward_transfer, forgetting, forward_transfer
from continual.models import load_model
from continual.runner import RunResult, load_result, run
from continual.streams import get_stream

__version__ = "0.1.0"

__all__ = ["ContinualError", "RunConfig", "RunResult", "average_accuracy", "backward_transfer", "compare_table",
           "forgetting", "forward_transfer", "get_stream", "load_model", "load_result", "run"]
