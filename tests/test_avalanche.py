import numpy as np
import pytest
import torch

from continual.errors import ContinualError
from continual.evaluation import evaluate_stream
from continual.interop.avalanche import CausalLMProblem, avalanche_metrics, evaluate_experience, to_avalanche
from continual.metrics import backward_transfer, forgetting, forward_transfer, summarise
from continual.streams import get_stream
from continual.training import IGNORE, tokenize_completions
from strategies.naive import Naive


@pytest.fixture(scope="module")
def stream():
    return get_stream("facts", options={"camp_size": 3})


@pytest.fixture(scope="module")
def scenario(stream, tiny):
    return to_avalanche(stream, tiny.tokenizer)


def test_facts_stream_becomes_one_experience_per_task_with_task_labels(stream, scenario):
    assert set(scenario.streams) == {"train", "test", "reversed", "heldout"}
    for name in ("train", "test", "reversed", "heldout"):
        experiences = list(scenario.streams[name])
        assert len(experiences) == len(stream.tasks) == 3
        for i, (exp, task) in enumerate(zip(experiences, stream.tasks)):
            assert exp.current_experience == i and exp.task_label == i and exp.task_labels == [i]
            split = task.train if name == "train" else task.eval["train" if name == "test" else name]
            assert len(exp.dataset) == len(split) > 0
            assert {exp.dataset[k]["targets_task_labels"] for k in range(len(exp.dataset))} == {i}
            assert exp.dataset[0]["prompt"] == split[0]["prompt"]
    # the test stream is the split that fills the accuracy matrix; its targets are the right candidates
    for exp, task in zip(scenario.test_stream, stream.tasks):
        assert list(exp.dataset.targets) == task.eval[task.matrix_split]["label"]
        assert exp.dataset[0]["candidates"] == [" friend", " enemy"]


def test_training_items_carry_our_completion_only_tokens(stream, scenario, tiny):
    task, exp = stream.tasks[1], scenario.train_stream[1]
    ours = tokenize_completions(task.train, tiny.tokenizer, 128)
    for k in range(len(task.train)):
        item = exp.dataset[k]
        assert (item["prompt"], item["completion"]) == (task.train[k]["prompt"], task.train[k]["completion"])
        assert (item["input_ids"], item["labels"]) == (ours[k]["input_ids"], ours[k]["labels"])
    loader = torch.utils.data.DataLoader(exp.dataset, batch_size=4, collate_fn=exp.dataset.collate_fn)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "targets_task_labels"}
    assert batch["targets_task_labels"].tolist() == [1] * 4
    lengths = batch["attention_mask"].sum(1)
    for row, n in enumerate(lengths.tolist()):
        assert batch["input_ids"][row, :n].tolist() == ours[row]["input_ids"]
        assert (batch["labels"][row, n:] == IGNORE).all()
    # an LM trains on the batch as it comes (task labels aside)
    out = tiny.model(**{k: v for k, v in batch.items() if k != "targets_task_labels"})
    assert torch.isfinite(out.loss)


def test_untokenized_export_batches_text(stream):
    scenario = to_avalanche(stream)
    exp = scenario.train_stream[2]
    # every column of the task's training set (facts adds the false answer, "rejected", for DPO), no tokens
    assert set(exp.dataset[0]) == set(stream.tasks[2].train.column_names) | {"targets_task_labels"}
    batch = exp.dataset.collate_fn([exp.dataset[k] for k in range(3)])
    assert batch["prompt"] == stream.tasks[2].train["prompt"][:3]
    assert batch["targets_task_labels"].tolist() == [2, 2, 2]
    test_batch = scenario.test_stream[0].dataset.collate_fn([scenario.test_stream[0].dataset[k] for k in range(2)])
    assert test_batch["label"].tolist() == stream.tasks[0].eval["train"]["label"][:2]


def test_evaluate_experience_scores_as_the_runner_does(stream, scenario, tiny):
    rows = evaluate_stream(tiny.model, tiny.tokenizer, stream, Naive(), "base", -1)
    for j, exp in enumerate(scenario.test_stream):
        expected = next(r["accuracy"] for r in rows if r["task"] == stream.tasks[j].name and r["split"] == "train")
        assert evaluate_experience(tiny.model, tiny.tokenizer, exp) == pytest.approx(expected)
    with pytest.raises(ContinualError, match="test experience"):
        evaluate_experience(tiny.model, tiny.tokenizer, scenario.train_stream[0])


def test_avalanches_own_strategy_and_replay_plugin_train_the_lm_on_the_export(scenario, tiny):
    import copy

    from avalanche.evaluation.metrics import loss_metrics
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin, SupervisedPlugin
    from avalanche.training.supervised import Naive

    class LMNaive(CausalLMProblem, Naive):
        pass

    class Record(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.steps = []

        def before_backward(self, strategy, **kwargs):
            batch = {k: v for k, v in strategy.mbatch.items() if k != "targets_task_labels"}
            with torch.no_grad():
                hf_loss = float(strategy.model(**batch).loss)
            self.steps.append((strategy.mb_task_id.tolist(), float(strategy.loss), hf_loss))

    model, record = copy.deepcopy(tiny.model), Record()
    strategy = LMNaive(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), train_mb_size=4,
                       evaluator=EvaluationPlugin(loss_metrics(epoch=True), loggers=[]),
                       plugins=[ReplayPlugin(mem_size=6, batch_size=3, batch_size_mem=1), record])
    for experience in scenario.train_stream[:2]:
        strategy.train(experience)
    first, second = record.steps[:3], record.steps[3:]  # 11 examples a task: 3 batches of 4 (last 3) per epoch
    assert all(set(tasks) == {0} for tasks, _, _ in first)
    assert second and all(tasks[-1] == 0 and set(tasks[:-1]) == {1} for tasks, _, _ in second)  # one replayed
    for _, ours, hf in record.steps:  # the criterion is the HF model's own causal-LM loss
        assert ours == pytest.approx(hf, rel=1e-5)
    assert record.steps[-1][1] < record.steps[0][1]


def test_export_refuses_a_tokenizer_without_pad_token(stream, tiny):
    class NoPad:
        pad_token_id = None
    with pytest.raises(ContinualError, match="pad token"):
        to_avalanche(stream, NoPad())


# ------------------------------------------------------------------------------- metrics against Avalanche's

# (R, b, sizes): R[i, j] = task j after stage i, b = base model; every entry an exact accuracy on its task's examples
MATRICES = {
    "forgetting at the own stage": (  # the max of Chaudhry's forgetting falls on R[j, j]: both forgettings agree
        [[0.9, 0.3, 0.2], [0.6, 0.8, 0.4], [0.5, 0.7, 0.95]], [0.5, 0.25, 0.1], None),
    "peak after a later stage": (  # task 0 peaks after stage 1, task 1 before it was trained: they disagree
        [[0.6, 0.9, 0.1], [0.9, 0.7, 0.3], [0.7, 0.5, 0.8]], [0.5, 0.5, 0.5], None),
    "positive backward transfer": (
        [[0.5, 0.5, 0.5, 0.5], [0.75, 0.5, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [1.0, 1.0, 1.0, 0.75]],
        [0.5, 0.5, 0.5, 0.5], None),
    "facts demo shape (90 facts a task)": (
        np.array([[90, 44, 43], [47, 90, 48], [53, 87, 90]]) / 90, np.array([42, 38, 42]) / 90, [90, 90, 90]),
}


@pytest.mark.parametrize("name", MATRICES)
def test_metrics_agree_with_avalanche_where_conventions_agree(name):
    R, b, sizes = MATRICES[name]
    R, b = np.asarray(R, dtype=float), np.asarray(b, dtype=float)
    ours, theirs = summarise(R, b), avalanche_metrics(R, b, sizes)
    T = len(R)
    # BWT: same definition and sign; Avalanche's forgetting is exactly -BWT (score after the task's own stage minus
    # the last score), per task and averaged the same way (over the T-1 earlier tasks)
    assert theirs["bwt"] == pytest.approx(ours["bwt"], abs=1e-12)
    assert theirs["forgetting"] == pytest.approx(-ours["bwt"], abs=1e-12)
    assert theirs["forgetting_per_task"] == pytest.approx({j: R[j, j] - R[T - 1, j] for j in range(T - 1)})
    # FWT: ours uses the pretrained base where GEM used a random init; Avalanche uses the model "at init", which in
    # this loop is the base model, so they agree
    assert theirs["fwt"] == pytest.approx(ours["fwt"], abs=1e-12)
    # ACC: with equal task sizes the pooled accuracy is the mean of the last row
    if sizes is not None or len(set(theirs["sizes"])) == 1:
        assert theirs["acc"] == pytest.approx(ours["acc"], abs=1e-12)


def test_chaudhry_forgetting_differs_from_avalanches_when_a_task_peaks_later():
    R, b, _ = MATRICES["peak after a later stage"]
    R, b = np.asarray(R), np.asarray(b)
    theirs = avalanche_metrics(R, b)
    # Chaudhry: task 0 max(0.6, 0.9) - 0.7 = 0.2, task 1 max(0.9, 0.7) - 0.5 = 0.4 -> 0.3
    assert forgetting(R) == pytest.approx(0.3)
    # Avalanche: task 0 0.6 - 0.7 = -0.1, task 1 0.7 - 0.5 = 0.2 -> 0.05 (= -BWT)
    assert theirs["forgetting"] == pytest.approx(0.05)
    assert theirs["forgetting"] == pytest.approx(-backward_transfer(R))


def test_avalanche_accuracy_pools_examples_while_acc_averages_tasks():
    R = np.array([[1.0, 0.0], [0.5, 1.0]])
    b = np.array([0.0, 0.0])
    theirs = avalanche_metrics(R, b, sizes=[10, 30])
    assert summarise(R, b)["acc"] == pytest.approx(0.75)  # (0.5 + 1.0) / 2
    assert theirs["acc"] == pytest.approx((5 + 30) / 40)  # correct / scored over the whole test stream
    assert theirs["fwt"] == pytest.approx(forward_transfer(R, b))


def test_avalanche_metrics_refuse_scores_that_are_no_exact_accuracy():
    with pytest.raises(ContinualError, match="sizes"):
        avalanche_metrics([[0.5, 0.5], [0.5, 0.5]], [0.5, 0.5], sizes=[3, 3])
    with pytest.raises(ContinualError, match="at least 2 tasks"):
        avalanche_metrics([[0.5]], [0.5])
