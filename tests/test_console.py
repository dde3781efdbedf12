"""What a run prints while its bars are drawn: a labelled bar per phase, and each warning once, on its own line."""

import logging
import re
import warnings

from transformers import TrainerCallback

import continual
from continual.console import routed_output, warning_line


class WarnEveryStep(TrainerCallback):
    """A library that warns on every training step (as trl's DPO trainer did with a FutureWarning)."""

    def on_step_end(self, args, state, control, **kwargs):
        warnings.warn("this option is deprecated; use the other one", FutureWarning)


def test_a_run_labels_every_phase_and_prints_each_warning_once(tmp_path, capfd):
    continual.run(stream="facts", stream_options={"facts.camp_size": 3}, strategy="naive", model="tiny", steps=2,
                  batch_size=2, eval_cap=4, probe_options={"perplexity.tokens": 32, "kl.tokens": 8}, device="cpu",
                  out=str(tmp_path / "run"), progress=True, plots=False, callbacks=[WarnEveryStep()])
    err = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", capfd.readouterr().err)  # tqdm's cursor moves between bars
    lines = [line for chunk in err.split("\n") for line in chunk.split("\r")]
    # the warning: one line (6 steps raised it), not inside a bar line
    shown = [line for line in lines if "this option is deprecated" in line]
    assert len(shown) == 1 and shown[0].startswith("warning: FutureWarning (") and "%|" not in shown[0]
    # one labelled bar per phase, naming the stage or the model it works on
    for stage, task in enumerate(["hogwarts", "middle-earth", "galaxy"]):
        assert any(line.startswith(f"stage {stage + 1}: train {task}:") for line in lines), task
        assert any(line.startswith(f"after {task}: probe:") for line in lines), task
        assert any(line.startswith(f"after {task}: eval {task}:") for line in lines), task
    assert any(line.startswith("base model: probe:") for line in lines)
    assert not any(re.fullmatch(r"\s*100%\|.*", line) for line in lines)  # no unlabelled bar left behind


def test_routing_keeps_the_filters_in_force(capfd):
    """An ``error`` filter (the test suite's, for our own deprecations) still raises inside a routed run."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with routed_output():
            try:
                warnings.warn("old", DeprecationWarning)
            except DeprecationWarning:
                raised = True
            else:
                raised = False
    assert raised
    with routed_output():
        for _ in range(3):
            warnings.warn("twice is too many", UserWarning)
    assert capfd.readouterr().err.count("twice is too many") == 1


def test_routing_off_leaves_warnings_alone(recwarn):
    with routed_output(enabled=False):
        warnings.warn("seen by the caller", UserWarning)
    assert [str(w.message) for w in recwarn] == ["seen by the caller"]


def test_library_log_records_are_written_above_the_bars(capfd):
    """A library logger that prints to the terminal (transformers' own stderr handler) goes through tqdm while bars
    are drawn, and gets its handler back afterwards."""
    import sys
    logger = logging.getLogger("transformers")
    own = logging.StreamHandler(sys.stderr)  # what transformers installs, made on this test's stderr
    logger.addHandler(own)
    try:
        with routed_output():
            assert own not in logger.handlers
            logging.getLogger("transformers.trainer").warning("a library warning")
        assert own in logger.handlers
    finally:
        logger.removeHandler(own)
    assert capfd.readouterr().err.count("a library warning") == 1


def test_warning_line_is_one_line():
    line = warning_line("first line\nsecond line", FutureWarning, "/some/where/trl/trainer.py", 12)
    assert line == "warning: FutureWarning (trainer.py:12): first line"
