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


def test_defaults_are_lwf_like_prompt_positions_at_temperature_two():
    options = DistillOptions()
    assert options.positions == "prompt" and options.temperature == 2.0


def test_at_default_positions_the_answer_positions_contribute_zero_kl():
    """The KL averages over positions predicting a prompt token only: scrambling the student's logits at every
    other position (the answer's, the last) leaves it unchanged; with positions=all it moves. Its value equals a
    direct computation over the prompt positions."""
    from strategies.distill import distilled_positions
    runner = StageRunner(Distill(), steps=2, lr=1e-2)
    strategy, model = runner.strategy, runner.model
    inputs = batch(runner)
    strategy.before_stage(model, runner.context(0))
    runner.stage(0)  # the student moves off the teacher (the model before stage 0)
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        teacher = strategy.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    labels, attention = inputs["labels"], inputs["attention_mask"]
    prompt = torch.zeros_like(attention)
    prompt[:, :-1] = (labels[:, 1:] == -100) & (attention[:, 1:] == 1)
    assert torch.equal(distilled_positions(inputs, "prompt"), prompt)
    answer = torch.zeros_like(attention)
    answer[:, :-1] = labels[:, 1:] != -100  # positions whose next token is an answer token
    assert int(answer.sum()) > 0 and int((prompt * answer).sum()) == 0
    t, s = (teacher / 2).log_softmax(-1), (out.logits / 2).log_softmax(-1)
    per = (t.exp() * (t - s)).sum(-1)
    expected = float((per * prompt).sum() / prompt.sum() * 4)
    value = float(strategy.loss_terms(model, inputs, out)["distill_kl"])
    assert value == pytest.approx(expected, rel=1e-5) and value > 0
    scrambled = out.logits.clone()
    noise = torch.randn(scrambled.shape, generator=torch.Generator().manual_seed(0)) * 10
    scrambled[prompt == 0] += noise[prompt == 0]
    out.logits = scrambled
    assert float(strategy.loss_terms(model, inputs, out)["distill_kl"]) == pytest.approx(value, rel=1e-6)
    strategy.config.positions = "all"
    assert float(strategy.loss_terms(model, inputs, out)["distill_kl"]) > value + 1.0  # the answer's KL counts now
