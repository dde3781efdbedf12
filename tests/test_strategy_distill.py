import pytest
import torch

from continual.training import CompletionCollator, tokenize_completions
from strategies.distill import Distill, DistillOptions, token_kl
from tests.conftest import StageRunner


def batch(runner, n=4):
    rows = tokenize_completions(runner.stream.tasks[0].train.select(range(n)), runner.tokenizer, 64)
    return CompletionCollator(runner.tokenizer.pad_token_id)(list(rows))


def test_token_kl_matches_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    t, s = torch.randn(2, 5, 7, generator=gen), torch.randn(2, 5, 7, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    p, q = t.softmax(-1), s.softmax(-1)
    per = (p * (p.log() - q.log())).sum(-1)
    expected = (per * mask).sum() / mask.sum()
    torch.testing.assert_close(token_kl(t, s, mask), expected)
    torch.testing.assert_close(token_kl(t, s, mask, temperature=2.0),
                               token_kl(t / 2, s / 2, mask) * 4)


def test_distill_loss_is_zero_when_student_equals_teacher_and_positive_after_a_stage():
    runner = StageRunner(Distill(), steps=3, lr=1e-2)
    strategy, model = runner.strategy, runner.model
    strategy.before_stage(model, runner.context(0))
    inputs = batch(runner)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    assert strategy.loss_terms(model, inputs, out)["distill_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert all(not p.requires_grad for p in strategy.teacher.parameters())
    runner.stage(0)  # the teacher is the model before stage 0, the student has moved
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    assert strategy.loss_terms(model, inputs, out)["distill_kl"].item() > 1e-4


def test_original_teacher_is_kept_across_stages():
    runner = StageRunner(Distill(DistillOptions(teacher="original", general_batch=2)), steps=2, lr=1e-2)
    teacher = runner.strategy.teacher
    before = runner.logits(teacher)
    runner.stage(0)
    runner.stage(1)
    assert runner.strategy.teacher is teacher
    torch.testing.assert_close(runner.logits(teacher), before)
    assert "distill_general_kl" in runner.stage(2)[-1]
