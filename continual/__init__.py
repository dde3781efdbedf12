"""continual: measure, and limit, what a causal language model forgets when fine-tuned on one task after another.

Notebook use::

    import continual
    result = continual.run(stream="facts", strategy="naive", model="tiny", out="runs/demo")
    result.matrix          # accuracy matrix (pandas), row "base" first
    result.summary["bwt"]  # metrics, with their conventions in result.summary["conventions"]
    continual.compare_table(["runs"])  # strategy x metric DataFrame over run directories (mean, 95% CI, n)

Names are imported on first use (PEP 562), so ``import continual`` stays light and the strategies package can
import continual's modules without a cycle.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ContinualError": "continual.errors", "RunConfig": "continual.config", "Run": "continual.results",
    "RunResult": "continual.runner", "run": "continual.runner", "load_result": "continual.runner",
    "compare_table": "continual.compare", "get_stream": "continual.streams", "register_stream": "continual.streams",
    "register_probe": "continual.probes", "register_strategy": "strategies:register",
    "load_model": "continual.models",
    "average_accuracy": "continual.metrics", "backward_transfer": "continual.metrics",
    "forgetting": "continual.metrics", "forward_transfer": "continual.metrics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module, _, attr = _EXPORTS[name].partition(":")
        return getattr(importlib.import_module(module), attr or name)
    raise AttributeError(f"module 'continual' has no attribute {name!r}")


def __dir__():
    return __all__ + ["__version__"]
