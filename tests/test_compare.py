import dataclasses
import json
import math
import time
import zlib

import numpy as np
import pandas as pd
import pytest

from continual.cli import main
from continual.compare import (compare_table, find_runs, matched_on, mean_interval, t_quantile, to_latex,
                               to_markdown, write_tables)
from continual.config import RunConfig
from continual.errors import ContinualError
from continual.results import RunDir


def synthetic_run(path, strategy="naive", seed=0, lr=1e-4, tasks="", steps=5, status="completed"):
    """A run directory written by the runner's own writers (RunDir.write_results, summarise_run) from made-up scores:
    no model, milliseconds. Accuracies are random but fixed by (strategy, lr, seed, tasks)."""
    from continual import runner
    from continual.results import Run
    config, made, probes = runner.resolve(RunConfig(stream="facts", strategy=strategy, model="tiny", seed=seed, lr=lr,
                                                    tasks=tasks, steps=steps, stream_options={"facts.camp_size": 3},
                                                    out=str(path), device="cpu", progress=False))
    stream = runner.stream_for(config)
    rng = np.random.default_rng(zlib.crc32(f"{strategy}{lr}{seed}{tasks}".encode()))
    names = [st.name for st in made.stage_plan(stream, steps)]
    run_dir = RunDir(path, config.identity(), config.config_hash())
    run_dir.open(fresh=False)
    columns = {"cloze": {"probe": "cloze", "description": "knowledge cloze accuracy", "higher_is_better": True,
                         "chance": 0.25, "headline": True, "primary": False, "label": "", "unit_interval": True},
               "retention": {"probe": "cloze", "description": "retention (kept share above chance)",
                             "higher_is_better": True, "chance": 0.0, "headline": True, "primary": True,
                             "label": "retention", "unit_interval": False},
               "ppl_ratio": {"probe": "perplexity", "description": "perplexity ratio", "higher_is_better": False,
                             "chance": 1.0, "headline": True, "primary": False, "label": "", "unit_interval": False},
               "kl": {"probe": "kl", "description": "KL(base || model)", "higher_is_better": False, "chance": 0.0,
                      "headline": True, "primary": False, "label": "", "unit_interval": False}}
    resolved = {"matrix_split": {t.name: t.matrix_split for t in stream.tasks}, "probe_columns": columns}
    run_dir.write_yaml("config.yaml", {"config_hash": run_dir.hash, "config": dataclasses.asdict(config),
                                       "resolved": resolved})
    scores, probe_rows = [], []
    for k, after in enumerate(["base"] + names):
        for task in stream.tasks:
            for split, ds in task.eval.items():
                scores.append({"after": after, "task": task.name, "split": split,
                               "accuracy": 0.5 if after == "base" else float(rng.uniform(0.3, 1.0)),
                               "accuracy_norm": 0.5, "n": len(ds)})
        cloze = 0.8 if after == "base" else float(rng.uniform(0.5, 0.8))
        probe_rows.append({"after": after, "cloze": cloze, "retention": (cloze - 0.25) / (0.8 - 0.25),
                           "ppl_ratio": 1.0 + k, "kl": 0.1 * k})
    run = Run(path, dataclasses.asdict(config), {}, pd.DataFrame(scores), pd.DataFrame(probe_rows), pd.DataFrame(),
              resolved)
    run_dir.write_results(run)
    if status == "completed":
        summary = runner.summarise_run(run, config, made, stream, names, columns, 1000 * (1 + seed), 5000,
                                       time.time() - 1.0, "cpu", {})
        run_dir.write_json("summary.json", summary)
    else:
        run_dir.write_json("summary.json", {"status": status})
    run_dir.close()
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    for seed in range(3):
        synthetic_run(root / "naive" / f"seed{seed}", "naive", seed)
    synthetic_run(root / "naive-fast" / "seed0", "naive", 0, lr=3e-4)
    synthetic_run(root / "lora" / "seed0", "lora", 0, lr=5e-4)
    synthetic_run(root / "joint" / "seed0", "joint", 0)
    synthetic_run(root / "broken" / "seed0", "ewc", 0, status="failed")
    return root


def summaries(root, pattern):
    return [json.loads(p.read_text()) for p in sorted(root.glob(pattern))]


def test_t_quantiles_match_the_tables():
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=5e-4)
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=5e-4)
    assert t_quantile(0.975, 10) == pytest.approx(2.228, abs=5e-4)
    assert t_quantile(0.95, 4) == pytest.approx(2.132, abs=5e-4)
    assert t_quantile(0.975, 100000) == pytest.approx(1.960, abs=5e-4)
    with pytest.raises(ValueError):
        t_quantile(0.3, 2)


def test_mean_interval_on_a_known_sample():
    mean, half, n = mean_interval([1.0, 2.0, 3.0])  # s = 1, t(0.975, 2) = 4.3027
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    mean, half, n = mean_interval([0.7, None, float("nan")])  # undefined values do not count
    assert mean == 0.7 and n == 1 and math.isnan(half)
    assert mean_interval([])[2] == 0


def test_table_rows_equal_the_run_summaries(results, caplog):
    table = compare_table([results])
    assert "skipping" in caplog.text and "broken" in caplog.text  # the failed run is named, not tabulated
    assert list(table["strategy"]) == ["base", "naive", "naive", "lora", "joint"]  # base first, joint last
    assert list(table["lr"]) == ["", "1e-04", "3e-04", "5e-04", "1e-04"]
    naive = table[(table["strategy"] == "naive") & (table["lr"] == "1e-04")].iloc[0]
    seeds = summaries(results, "naive/seed*/summary.json")
    assert naive["n"] == 3
    for metric in ("acc", "bwt", "fwt", "forgetting", "retention"):
        values = [s[metric] if metric in s else s["probe"][metric] for s in seeds]
        assert naive[metric] == pytest.approx(np.mean(values), abs=1e-12), metric
        assert naive[f"{metric}_ci95"] == pytest.approx(4.302653 * np.std(values, ddof=1) / math.sqrt(3), rel=1e-5)
    assert naive["kl"] == pytest.approx(np.mean([s["probe"]["kl"] for s in seeds]))
    assert naive["trainable"] == pytest.approx(np.mean([s["trainable_parameters"] for s in seeds]))
    lora = table[table["strategy"] == "lora"].iloc[0]
    (one,) = summaries(results, "lora/seed0/summary.json")
    assert lora["n"] == 1 and lora["acc"] == one["acc"] and math.isnan(lora["acc_ci95"])
    assert lora["ppl_ratio"] == one["probe"]["ppl_ratio"] and lora["wall_s"] == one["wall_time_s"]
    matrix = pd.read_csv(results / "lora/seed0/matrix.csv", index_col="after")
    tasks = list(matrix.columns)
    assert lora["learned"] == pytest.approx(np.mean([matrix.loc[t, t] - matrix.loc["base", t] for t in tasks]))
    reversed_ = pd.read_csv(results / "lora/seed0/matrix_reversed.csv", index_col="after")
    assert lora["acc_reversed"] == pytest.approx(reversed_.iloc[-1].mean())
    joint = table[table["strategy"] == "joint"].iloc[0]
    assert math.isnan(joint["bwt"]) and joint["acc"] == summaries(results, "joint/seed0/summary.json")[0]["acc"]
    base = table.iloc[0]
    assert base["n"] == 3 and base["acc"] == pytest.approx(0.5) and base["kl"] == 0 and base["retention"] == 1
    assert math.isnan(base["bwt"])


def test_tables_are_written_in_three_formats_with_conventions(results, tmp_path):
    table = compare_table([results])
    md, csv, tex = write_tables(table, tmp_path)
    back = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    assert back["acc"].tolist() == pytest.approx(table["acc"].tolist())
    text = md.read_text()
    naive = table.iloc[1]
    assert f"{naive['acc']:.3f} ± {naive['acc_ci95']:.3f}" in text  # mean ± half-width
    assert "Student-t 95%" in text and "Chaudhry" in text and "GEM-style" in text
    # a split's ACC gets its note; the run counts beside each mean (acc_n, acc_heldout_n) are no split's
    assert "- acc_heldout: mean over tasks of the final row of matrix_heldout.csv" in text
    assert "- acc_n:" not in text and "acc_heldout_n:" not in text
    assert "| lora | 5e-04 | 1 |" in text  # one seed: no interval
    lora_line = next(line for line in text.splitlines() if line.startswith("| lora |"))
    assert "±" not in lora_line
    latex = tex.read_text()
    assert "\\begin{tabular}" in latex and "$\\pm$" in latex and "% bwt: GEM BWT" in latex
    assert to_markdown(table) == text and to_latex(table) == latex


def test_bad_inputs_give_one_clear_error(tmp_path):
    with pytest.raises(ContinualError, match="does not exist"):
        find_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ContinualError, match="no completed run directory"):
        find_runs([tmp_path / "empty"])


def test_compare_command_prints_and_writes(results, tmp_path, capsys):
    assert main(["compare", str(results / "naive"), str(results / "lora"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| naive |" in out and "| lora |" in out and (tmp_path / "comparison.csv").is_file()
    assert main(["compare", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("continual: error:")


def test_compare_match_to_writes_the_matched_table_at_any_reference_lr(results, tmp_path, capsys):
    dirs = [str(results / "naive"), str(results / "naive-fast"), str(results / "lora")]
    table = compare_table(dirs)
    fast = table[(table["strategy"] == "naive") & (table["lr"] == "3e-04")]
    assert main(["compare", *dirs, "--out", str(tmp_path), "--match-to", "naive@3e-4"]) == 0
    out = capsys.readouterr().out
    assert f"naive@3e-4's learned ({float(fast['learned'].iloc[0]):+.3f}" in out
    matched = pd.read_csv(tmp_path / "matched.csv", dtype={"lr": str})
    # the reference row is the one asked for, not naive's other learning rate; lora keeps its one row
    assert list(matched.loc[matched["strategy"] != "base", "lr"]) == ["3e-04", "5e-04"]
    assert "nearest naive's at lr 3e-04" in (tmp_path / "matched.md").read_text()
    # a reference that is not in the table, or is not STRATEGY@LR: one error line, and nothing written
    for bad, says in (("naive@3e-05", "no 'naive' row at lr 3e-05"), ("naive", "give STRATEGY@LR"),
                      ("naive@fast", "give STRATEGY@LR")):
        empty = tmp_path / bad.replace("@", "-")
        assert main(["compare", *dirs, "--out", str(empty), "--match-to", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and not empty.exists()


def test_rows_pool_task_orders_of_one_task_set_only(tmp_path):
    """--tasks picks tasks as well as ordering them: a permutation of the full stream pools with it, a 2-task subset
    is a row of its own (with its own base row), never mixed into the full stream's mean."""
    full = [synthetic_run(tmp_path / f"full{s}", "naive", s) for s in range(2)]
    permuted = synthetic_run(tmp_path / "permuted", "naive", 2, tasks="galaxy,middle-earth,hogwarts")
    subset = [synthetic_run(tmp_path / f"subset{s}", "naive", s, tasks="hogwarts,galaxy") for s in range(2)]
    table = compare_table([tmp_path])
    trained = table[table["strategy"] == "naive"].set_index("task_set")
    assert sorted(trained.index) == ["galaxy,hogwarts", "galaxy,hogwarts,middle-earth"]
    whole = trained.loc["galaxy,hogwarts,middle-earth"]
    accs = [json.loads((p / "summary.json").read_text())["acc"] for p in full + [permuted]]
    assert whole["n"] == 3 and whole["acc_n"] == 3 and whole["acc"] == pytest.approx(np.mean(accs), abs=1e-12)
    part = trained.loc["galaxy,hogwarts"]
    sub_accs = [json.loads((p / "summary.json").read_text())["acc"] for p in subset]
    assert part["n"] == 2 and part["acc"] == pytest.approx(np.mean(sub_accs), abs=1e-12)
    assert part["acc_ci95"] == pytest.approx(12.706205 * np.std(sub_accs, ddof=1) / math.sqrt(2), rel=1e-5)
    bases = table[table["strategy"] == "base"].set_index("task_set")
    assert bases.loc["galaxy,hogwarts", "n"] == 2 and bases.loc["galaxy,hogwarts,middle-earth", "n"] == 3


def test_n_per_metric_counts_the_runs_where_it_is_defined(tmp_path):
    """A metric missing (null) in one run of a row: its mean, interval and n are over the other runs, and the cell
    says so; the row's n stays the runs it holds."""
    paths = [synthetic_run(tmp_path / f"seed{s}", "naive", s) for s in range(3)]
    summary_path = paths[0] / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["probe"]["kl"] = None
    summary_path.write_text(json.dumps(summary))
    table = compare_table([tmp_path])
    naive = table[table["strategy"] == "naive"].iloc[0]
    kls = [json.loads((p / "summary.json").read_text())["probe"]["kl"] for p in paths[1:]]
    assert naive["n"] == 3 and naive["acc_n"] == 3 and naive["kl_n"] == 2
    assert naive["kl"] == pytest.approx(np.mean(kls), abs=1e-12)
    assert naive["kl_ci95"] == pytest.approx(12.706205 * np.std(kls, ddof=1) / math.sqrt(2), rel=1e-5)
    assert table[table["strategy"] == "naive"].iloc[0]["bwt_n"] == 3
    rows = to_markdown(table).split("\n\n")[0]  # the table (the notes follow a blank line)
    assert rows.count("(n=") == 1 and f"{naive['kl']:.3f} ± {naive['kl_ci95']:.3f} (n=2)" in rows  # the kl cell


def test_runs_record_their_place_in_the_registry(results):
    """compare orders rows without importing the strategy modules: each run records its strategy's rank."""
    from strategies import STRATEGIES
    for run in find_runs([results]):
        assert run.summary["strategy_rank"] == STRATEGIES.names().index(run.summary["strategy"])


def test_compare_and_report_do_not_load_the_strategy_stack(results, tmp_path):
    """Reading finished runs needs no trainer: `continual compare` never imports strategies, trl or peft (those
    imports were most of a report's time)."""
    import subprocess
    import sys
    code = ("import sys; from continual import compare, report; t = compare.compare_table([sys.argv[1]]); "
            "print(sorted(m for m in ('strategies', 'trl', 'peft', 'transformers') if m in sys.modules)); "
            "print(','.join(dict.fromkeys(t['strategy'])))")
    out = subprocess.run([sys.executable, "-c", code, str(results)], capture_output=True, text=True, check=True)
    loaded, order = out.stdout.strip().splitlines()
    assert loaded == "[]"
    assert order == "base,naive,lora,joint"  # the registry's order, read from the runs (joint: a reference, last)


def test_class_incremental_base_row_is_scored_over_every_label(tmp_path):
    """On a class-incremental stream b[j] (the matrix's base row) is scored over the labels of tasks 0..j, the
    final row over all of them; the table's base ACC is the base model scored over all of them, checked here against
    an unbatched forward pass per (prompt, label)."""
    import torch

    import continual
    from continual.evaluation import capped
    from continual.models import load_model
    from continual.runner import format_stream, stream_for
    from continual.scoring import split_continuation

    config = RunConfig(stream="topics", tasks="reviews,stories", strategy="naive", model="tiny", steps=1,
                       batch_size=2, eval_cap=6, probe_options={"perplexity.tokens": 32, "kl.tokens": 8},
                       out=str(tmp_path / "run"), device="cpu", progress=False, plots=False)
    run = continual.run(config)
    loaded = load_model("tiny", seed=0)
    stream = format_stream(stream_for(config), loaded.tokenizer, False)
    every_label = stream.label_space(0, len(stream.tasks) - 1)
    assert len(every_label) == 4

    def hand_accuracy(task, labels):
        ds = capped(task.eval[task.matrix_split], 6)
        right = []
        for prompt, cands, gold in zip(ds["prompt"], ds["candidates"], ds["label"]):
            logprobs = []
            for label in labels:
                context, answer = split_continuation(loaded.tokenizer, prompt, label)
                ids = torch.tensor([context + answer])
                with torch.no_grad():
                    logits = loaded.model(ids).logits.log_softmax(-1)[0]
                logprobs.append(sum(float(logits[len(context) + i - 1, t]) for i, t in enumerate(answer)))
            right.append(labels[int(np.argmax(logprobs))] == cands[gold])
        return float(np.mean(right))

    seen = [hand_accuracy(t, stream.label_space(j, -1)) for j, t in enumerate(stream.tasks)]
    final = [hand_accuracy(t, every_label) for t in stream.tasks]
    assert list(run.matrix.loc["base"]) == pytest.approx(seen, abs=1e-9)  # b[j]: labels of tasks 0..j
    assert list(run.base_in_final_labels()) == pytest.approx(final, abs=1e-9)
    base = compare_table([run])
    assert base[base["strategy"] == "base"].iloc[0]["acc"] == pytest.approx(np.mean(final), abs=1e-9)
    # a task-incremental stream has one label space: its base row is b
    facts = synthetic_run(tmp_path / "facts", "naive", 0)
    facts_run = find_runs([facts])[0]
    assert list(facts_run.base_in_final_labels()) == list(facts_run.matrix.loc["base"])


def test_a_stream_on_two_scales_gets_one_acc_per_scale(tmp_path):
    """The mixed stream's ACC averages accuracy with ROUGE-L; the table also gives each scale's own ACC, over the
    tasks scored by it (and the base row's in the same way)."""
    path = synthetic_run(tmp_path / "mixed", "naive", 0)
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["matrix_metric"] = {"hogwarts": "accuracy", "middle-earth": "accuracy", "galaxy": "rougeL_f1"}
    summary_path.write_text(json.dumps(summary))
    run = find_runs([path])[0]
    table = compare_table([run]).set_index("strategy")
    final = run.matrix.loc[run.stages[-1]]
    assert table.loc["naive", "acc[accuracy]"] == pytest.approx((final["hogwarts"] + final["middle-earth"]) / 2)
    assert table.loc["naive", "acc[rougeL_f1]"] == pytest.approx(final["galaxy"])
    assert table.loc["naive", "acc"] == pytest.approx(final.mean())
    base = run.matrix.loc["base"]
    assert table.loc["base", "acc[rougeL_f1]"] == pytest.approx(base["galaxy"])
    assert "acc[rougeL_f1]: mean over the tasks scored by rougeL_f1" in to_markdown(compare_table([run]))
    one_scale = compare_table([synthetic_run(tmp_path / "facts", "naive", 1)])
    assert not [c for c in one_scale.columns if c.startswith("acc[")]


def test_the_notes_say_how_many_examples_a_cell_holds(results):
    table = compare_table([results])
    runs = find_runs([results])
    n = {int(v) for r in runs for v in r.scores[r.scores["split"] == "train"]["n"]}
    assert table.attrs["examples"] == (min(n), max(n))
    text = to_markdown(table)
    count = str(min(n)) if len(n) == 1 else f"{min(n)}-{max(n)}"
    assert f"Each run's matrix cell is a mean over {count} evaluation examples of its task" in text


def test_matched_on_learning_keeps_per_strategy_the_lr_nearest_the_references_learning():
    table = pd.DataFrame({"strategy": ["base", "naive", "naive", "lora", "lora", "lora", "ewc"],
                          "lr": ["", "1e-04", "3e-04", "1.5e-04", "5e-04", "1.5e-03", "1e-04"],
                          "n": [3] * 7,
                          "bwt": [np.nan, -0.5, -0.7, -0.1, -0.3, -0.6, -0.2],
                          "learned": [0.0, 0.40, 0.60, 0.10, 0.35, 0.45, np.nan]})
    table.attrs["metrics"] = {"bwt": ("BWT", True, 3)}
    picked, chosen, target = matched_on(table, "naive", "1e-04")
    assert target == 0.40
    # lora: 0.35 and 0.45 are both 0.05 away, and the tie goes to the lower lr; ewc has no learned to match on
    assert chosen == {"naive": "1e-04", "lora": "5e-04"}
    assert list(picked["strategy"]) == ["base", "naive", "lora"] and list(picked["bwt"][1:]) == [-0.5, -0.3]
    note = "per strategy the learning rate whose mean learned is nearest naive's at lr 1e-04 (+0.400)"
    assert note in to_markdown(picked) and note not in to_markdown(table)
    with pytest.raises(ContinualError, match="no 'naive' row at lr 3e-05 to match learning to"):
        matched_on(table, "naive", "3e-05")
    # every run at one learning rate: the table has no lr column, and each strategy keeps its one row
    one_lr = table.drop(columns="lr").drop_duplicates("strategy").reset_index(drop=True)
    assert matched_on(one_lr, "naive", "1e-04")[1] == {"naive": "", "lora": ""}
