"""The benchmark harness: its baselines compute what they claim, its counts are right, its output is complete.
Nothing here times anything."""

import json

import numpy as np
import pytest
import torch

from continual.bench import (BenchConfig, batch_tokens, one_by_one_predictions, render_markdown, run_bench,
                             seeds_generate_accuracy, train_worker)
from continual.cli import main
from continual.scoring import score_candidates
from continual.training import CompletionCollator, PackedCompletionCollator


class ScriptedGenerator(torch.nn.Module):
    """Stands in for a model whose generate() continues every prompt with a fixed text."""

    def __init__(self, tokenizer, continuation):
        super().__init__()
        self.tokenizer, self.continuation = tokenizer, continuation
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def generate(self, input_ids, attention_mask=None, **kwargs):
        self.calls.append(kwargs)
        extra = torch.tensor([self.tokenizer(self.continuation)["input_ids"]])
        return torch.cat([input_ids, extra], dim=1)


def test_seeds_way_takes_the_first_word_of_a_five_beam_generation(tiny):
    model = ScriptedGenerator(tiny.tokenizer, " enemy. We're going to")
    correct, n = seeds_generate_accuracy(model, tiny.tokenizer, ["Harry Potter is Lord Voldemort's"] * 2,
                                         ["enemy", "friend"])
    assert (correct, n) == (1, 2)
    assert all(c["num_beams"] == 5 and c["max_new_tokens"] == 10 for c in model.calls)


def test_one_by_one_baseline_agrees_with_the_scorer(tiny):
    prompts = ["Harry Potter is Lord Voldemort's", "The cat sat on the", "Two plus two is"]
    candidates = [[" friend", " enemy"], [" mat", " moon", " quick brown fox"], [" four", " five"]]
    batched = score_candidates(tiny.model, tiny.tokenizer, prompts, candidates).predictions()
    assert one_by_one_predictions(tiny.model, tiny.tokenizer, prompts, candidates) == list(batched)


def test_batch_tokens_counts_padding_and_packed_batches():
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4]}, {"input_ids": [5, 6], "labels": [-100, 6]}]
    assert batch_tokens(CompletionCollator(pad_token_id=0)(rows)) == (8, 6)  # 2 x 4 of which 6 real
    assert batch_tokens(PackedCompletionCollator()(rows)) == (6, 6)


@pytest.mark.parametrize("packing", [False, True])
def test_train_worker_reports_consistent_figures(packing):
    spec = {**BenchConfig(model="tiny", steps=2, warmup=1, prep_steps=1, batch_size=4, packing=packing).__dict__,
            "strategy": "ewc", "device": "cpu"}
    r = train_worker(spec)
    assert r["step_s"] > 0 and r["tokens_per_s"] >= r["nonpad_tokens_per_s"] > 0
    assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / r["step_s"])
    assert r["tokens_per_cpu_s"] == pytest.approx(r["tokens_per_step"] / r["step_cpu_s"])
    assert (r["padding_share"] == 0) if packing else (0 < r["padding_share"] < 1)
    assert r["peak_memory_mb"] > r["memory_growth_mb"] >= 0


def test_plain_loop_worker_trains_the_same_batches():
    spec = {**BenchConfig(model="tiny", steps=2, warmup=0, batch_size=4).__dict__, "strategy": "plain",
            "device": "cpu"}
    r = train_worker(spec)
    assert r["strategy"] == "plain" and r["tokens_per_s"] > r["nonpad_tokens_per_s"] > 0


def test_evaluation_section_and_report(tiny):
    cfg = BenchConfig(model="tiny", eval_examples=20, slow_examples=2, e2e=False)
    report = run_bench(cfg, sections=("evaluation",), log=lambda m: None, command="continual bench --model tiny")
    ev = report["evaluation"]
    assert ev["examples"] == 20 and ev["slow_examples"] == 2
    assert ev["one_by_one_agrees_with_toolkit"] == "2/2"
    assert ev["cloze_shared_prefix_max_abs_diff"] < 1e-4  # the fast path scored the cloze items like the slow one
    assert ev["cloze_shared_prefix_input_tokens"] < ev["cloze_rows_input_tokens"]  # with less input
    assert ev["speedup_vs_seeds"] == pytest.approx(ev["toolkit_ex_per_s"] / ev["seeds_ex_per_s"])
    assert ev["speedup_vs_seeds_cpu"] == pytest.approx(ev["toolkit_ex_per_cpu_s"] / ev["seeds_ex_per_cpu_s"])
    text = render_markdown(report)
    assert "seeds' way" in text and "EWC step / naive step: <= 1.15" in text and report["environment"]["torch"] in text


def test_training_rows_render_with_ratios():
    report = {"command": "c", "config": BenchConfig().__dict__,
              "environment": {"device": "cpu", "hardware": "CPU", "torch": "t", "transformers": "x", "date": "d",
                              "load_average": 1.0},
              "training": [{"strategy": s, "step_s": t, "step_cpu_s": 2 * t, "tokens_per_s": 100 / t,
                            "nonpad_tokens_per_s": 80 / t, "padding_share": 0.2, "vs_plain_tokens": 1.0,
                            "vs_plain_nonpad_tokens": 1.0, "vs_plain_tokens_cpu": 0.5, "step_vs_naive": t / 2.0,
                            "step_cpu_vs_naive": t / 2.0, "peak_memory_mb": 900, "memory_growth_mb": 50,
                            "memory_kind": "peak RSS", "hook_s": h, "hooks_vs_naive": (2.0 + h) / 2.0}
                           for s, t, h in (("plain", 1.0, 0.0), ("naive", 2.0, 0.0), ("ewc", 2.2, 0.25))]}
    text = render_markdown(report)
    assert "| ewc | 2.200 | 4.400 | 45 | 36 | 20% | 1.00 | 1.00 | 0.50 | 1.10 | 1.10 | 0.250 | 1.12 | 900 | 50 |" in text


def test_cli_bench_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    code = main(["bench", "--model", "tiny", "--only", "evaluation", "--eval-examples", "10", "--slow-examples", "1",
                 "--json", str(out_json), "--markdown", str(out_md)])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["evaluation"]["examples"] == 10 and report["environment"]["device"] == "cpu"
    assert out_md.read_text() == capsys.readouterr().out.strip() + "\n"  # written after the section, then printed


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "steps must be at least 1"),
    (["--only", "speed"], "--only names unknown section(s) speed"),
    (["--strategies", "naive,nope"], "unknown strategy 'nope'"),
    (["--json", "/nonexistent-folder/x.json"], "its folder does not exist"),
])
def test_cli_bench_rejects_bad_input(argv, message, capsys):
    assert main(["bench", "--model", "tiny", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("continual: error:") and message in err and len(err.splitlines()) == 1


def test_worker_failure_is_one_clear_error():
    from continual.bench import _in_subprocess
    from continual.errors import ContinualError
    spec = {**BenchConfig(model="/no/such/model").__dict__, "strategy": "plain", "device": "cpu"}
    with pytest.raises(ContinualError, match="benchmark worker for 'plain' failed"):
        _in_subprocess(spec)


def test_packed_and_padded_rows_count_the_same_real_tokens(tiny):
    from continual.training import tokenize_completions
    from continual.streams import get_stream
    rows = list(tokenize_completions(get_stream("facts", options={"camp_size": 3}).tasks[0].train.select(range(8)),
                                     tiny.tokenizer, 64))
    padded, packed = batch_tokens(CompletionCollator(tiny.tokenizer.pad_token_id)(rows)), batch_tokens(
        PackedCompletionCollator()(rows))
    assert padded[1] == packed[0] == packed[1] == int(np.sum([len(r["input_ids"]) for r in rows]))
