import math

import numpy as np
import pytest

from continual.metrics import (average_accuracy, backward_transfer, forgetting, forward_transfer, retention,
                               summarise)

# R[i, j]: score on task j after stage i (3 tasks); b: base model.
R = np.array([[0.9, 0.3, 0.2],
              [0.6, 0.8, 0.4],
              [0.5, 0.7, 0.95]])
b = np.array([0.5, 0.25, 0.1])


def test_acc_is_mean_of_last_row():
    assert average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_bwt_gem():
    # (R[2,0]-R[0,0] + R[2,1]-R[1,1]) / 2 = (-0.4 + -0.1) / 2
    assert backward_transfer(R) == pytest.approx(-0.25)


def test_fwt_gem_style_against_base():
    # (R[0,1]-b[1] + R[1,2]-b[2]) / 2 = (0.05 + 0.3) / 2
    assert forward_transfer(R, b) == pytest.approx(0.175)


def test_forgetting_chaudhry_uses_max_over_earlier_stages():
    # task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: max(0.3, 0.8) - 0.7 = 0.1
    assert forgetting(R) == pytest.approx(0.25)


def test_forgetting_max_includes_stages_before_the_task_was_trained():
    # task 1 scored 0.9 before it was trained (stage 0), 0.6 after its own stage, 0.6 at the end:
    # Chaudhry's max runs over l < T, so forgetting is 0.3 while BWT for that task is 0.
    M = np.array([[0.5, 0.9, 0.0],
                  [0.5, 0.6, 0.0],
                  [0.5, 0.6, 0.7]])
    assert forgetting(M) == pytest.approx((0.0 + 0.3) / 2)
    assert backward_transfer(M) == pytest.approx(0.0)


def test_forgetting_never_uses_the_base_row():
    # the base row is not an argument at all; a base far above every stage changes nothing
    assert forgetting(R) == summarise(R, np.array([1.0, 1.0, 1.0]))["forgetting"]


def test_single_task_metrics_are_undefined():
    one = np.array([[0.7]])
    assert average_accuracy(one) == pytest.approx(0.7)
    assert math.isnan(backward_transfer(one))
    assert math.isnan(forgetting(one))
    assert math.isnan(forward_transfer(one, np.array([0.5])))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="square"):
        average_accuracy(np.ones((2, 3)))
    with pytest.raises(ValueError, match="one entry per task"):
        forward_transfer(R, np.ones(2))


def test_retention():
    assert retention(0.25, 0.75, 0.25) == pytest.approx(0.0)
    assert retention(0.75, 0.75, 0.25) == pytest.approx(1.0)
    assert retention(0.5, 0.75, 0.25) == pytest.approx(0.5)
    assert math.isnan(retention(0.5, 0.25, 0.25))
    # with 247 items a chance scorer's standard error is ~0.0276: a base of 0.28 is inside the noise, 0.82 is not
    assert math.isnan(retention(0.26, 0.28, 0.25, n_items=247))
    assert retention(0.5, 0.82, 0.25, n_items=247) == pytest.approx(0.25 / 0.57)


def test_the_papers_op_bwt_and_aa_are_the_gem_numbers_on_a_hand_matrix():
    R = np.array([[0.9, 0.1, 0.2], [0.6, 0.8, 0.3], [0.5, 0.7, 0.9]])
    s = summarise(R, np.zeros(3))
    assert s["op"] == s["aa"] == s["acc"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)  # TRACE OP, O-LoRA AA
    assert s["bwt_trace"] == s["bwt"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)  # TRACE BWT
