"""The one exception type users see: a problem with their input, stated with its fix.

The CLI prints ``continual: error: <message>`` and exits 2 for these; anything else is a bug and keeps its traceback.
"""


class ContinualError(Exception):
    """Bad input or an unusable environment. The message names the problem and the fix in one line."""


class TrainingDiverged(ContinualError):
    """A non-finite loss stopped a stage."""
