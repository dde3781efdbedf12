import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import continual
from continual.cli import main
from continual.plots import write_plots
from tests.test_compare import synthetic_run

FAST = dict(stream="facts", strategy="naive", model="tiny", steps=2, batch_size=4,
            stream_options={"facts.camp_size": 3}, probe_options={"perplexity.tokens": 200, "kl.tokens": 50},
            progress=False, lr=1e-3)


def assert_image(path):
    """A non-empty PNG with a real size, or an SVG that parses; both formats written for every plot."""
    png, svg = path.parent / f"{path.name}.png", path.parent / f"{path.name}.svg"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", png
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 100 and len(data) > 5000, (png, width, height)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and len(list(root.iter())) > 50, svg


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    for seed in range(2):
        synthetic_run(root / "naive" / f"seed{seed}", "naive", seed)
        synthetic_run(root / "lora" / f"seed{seed}", "lora", seed, lr=5e-4)
    synthetic_run(root / "lora-fast" / "seed0", "lora", 0, lr=1.5e-3)
    synthetic_run(root / "joint" / "seed0", "joint", 0)
    return root


def test_plots_of_several_strategies_seeds_and_learning_rates(runs, tmp_path):
    written = write_plots([runs], tmp_path)
    stems = {p.stem for p in written}
    assert {"forgetting_curves", "probe", "learning_vs_forgetting"} <= stems
    assert {"matrix-naive_lr_1e-04", "matrix-lora_lr_5e-04", "matrix-lora_lr_1.5e-03", "matrix-joint_lr_1e-04"} <= stems
    assert len(written) == 2 * len(stems)  # PNG and SVG of each
    for stem in stems:
        assert_image(tmp_path / stem)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_plot_command_on_one_run_writes_into_its_plots_folder(runs, capsys):
    assert main(["plot", str(runs / "naive" / "seed0")]) == 0
    folder = runs / "naive" / "seed0" / "plots"
    for stem in ("matrix", "forgetting_curves", "probe", "learning_vs_forgetting"):
        assert_image(folder / stem)
    assert "files written" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return continual.run(out=str(tmp_path_factory.mktemp("tiny") / "run"), **FAST)


def test_a_run_writes_its_plots_and_the_final_models_predictions(tiny_run):
    for stem in ("matrix", "forgetting_curves", "probe", "learning_vs_forgetting", "relation_graph"):
        assert_image(tiny_run.path / "plots" / stem)
    predictions = tiny_run.predictions
    assert set(predictions["label"]) == {"friend", "enemy"} and set(predictions["label_index"]) == {0, 1}
    final = tiny_run.scores[tiny_run.scores["after"] == "galaxy"]
    assert len(predictions) == final["n"].sum() and set(predictions["after"]) == {"galaxy"}
    # each split's share of correct answers is the accuracy the runner recorded for the final model
    got = predictions.astype({"correct": float}).groupby(["task", "split"])["correct"].mean()
    for row in final.itertuples():
        assert got[(row.task, row.split)] == pytest.approx(row.accuracy), (row.task, row.split)
    assert ((predictions["predicted"] == predictions["label"]) == predictions["correct"]).all()


def test_a_plotting_failure_keeps_the_runs_results(tmp_path, monkeypatch, caplog):
    import continual.plots

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts today")
    monkeypatch.setattr(continual.plots, "write_plots", broken)
    result = continual.run(out=str(tmp_path / "run"), **FAST)
    assert result.summary["status"] == "completed" and (tmp_path / "run" / "matrix.csv").is_file()
    assert "plots of" in caplog.text and "no fonts today" in caplog.text and "continual plot" in caplog.text


# ------------------------------------------------------------------------------------------------ what is drawn

from matplotlib.colors import to_hex  # noqa: E402

from continual.compare import compare_table, find_runs, group_labels, learned, probe_metrics  # noqa: E402
from continual.plots import (forgetting_curves, learning_vs_forgetting, loss_curves, matrix_heatmap,  # noqa: E402
                             probe_curves, stage_trajectory)


def data_lines(ax):
    """The lines that carry data points (seaborn's legend proxies have none; axhline spans axes coordinates)."""
    return [line for line in ax.get_lines() if line.get_marker() == "o" and len(line.get_xdata()) > 0]


def horizontal_lines(ax):
    return {round(float(line.get_ydata()[0]), 6): line for line in ax.get_lines()
            if list(line.get_xdata()) == [0, 1] and len(set(line.get_ydata())) == 1}


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def legend_title(fig):
    return " ".join(legend.get_title().get_text() for legend in fig.legends)


@pytest.fixture(scope="module")
def loaded(runs):
    found = find_runs([runs])
    return found, group_labels(found)


def test_probe_plot_folds_an_affine_column_into_its_panel_and_anchors_accuracies(loaded):
    found, labels = loaded
    fig = probe_curves(found, labels)
    panels = [ax for ax in fig.axes if ax.get_title()]
    # the synthetic retention is (cloze - 0.25) / 0.55: the same curve, so it is cloze's right axis, not a panel
    assert [ax.get_title() for ax in panels] == ["cloze", "ppl_ratio", "kl"]
    cloze = panels[0]
    assert cloze.get_ylim() == pytest.approx((-0.02, 1.02))
    assert 0.25 in horizontal_lines(cloze)
    assert "(↑ better)" in cloze.get_ylabel() and "(↓ better)" in panels[1].get_ylabel()
    right = cloze.child_axes  # the secondary axis
    assert len(right) == 1 and right[0].get_ylabel() == "retention"
    assert "retention = 1.82 × cloze" in legend_title(fig)
    assert 1.0 in horizontal_lines(panels[1]) and 0.0 in horizontal_lines(panels[2])  # the base model's level
    groups = list(dict.fromkeys(labels))
    assert set(groups) | {"chance (0.25)", "base model level"} == set(legend_texts(fig))
    assert not any(ax.get_legend() for ax in fig.axes)  # one legend, under the panels
    # one line per group; a 3-task run has base + 3 stages, the pooled reference base + its one stage
    counts = sorted(len(line.get_xdata()) for line in data_lines(cloze))
    assert counts == [2, 4, 4, 4]
    naive = next(r for r, label in zip(found, labels) if r.summary["strategy"] == "naive")
    means = [np.mean([r.probe.set_index("after").loc[a, "cloze"] for r, label in zip(found, labels)
                      if label == labels[found.index(naive)]]) for a in naive.rows]
    assert any(np.allclose(line.get_ydata(), means) for line in data_lines(cloze))


def test_forgetting_curves_mark_each_tasks_own_stage(loaded):
    found, labels = loaded
    fig = forgetting_curves(found, labels)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == list(dict.fromkeys(labels))
    for ax, group in zip(panels, dict.fromkeys(labels)):
        members = [r for r, label in zip(found, labels) if label == group]
        assert ax.get_ylim() == pytest.approx((-0.02, 1.02)) and ax.get_ylabel() == "accuracy (trained examples)"
        assert len(data_lines(ax)) == 3 and all(len(line.get_xdata()) == len(members[0].rows)
                                                 for line in data_lines(ax))
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        mean = sum(r.matrix for r in members) / len(members)
        if members[0].summary["strategy"] == "joint":  # every task trained at its one stage, drawn at the end
            assert [float(s.get_xdata()[0]) for s in stars] == [3.0] * 3
            assert [float(s.get_ydata()[0]) for s in stars] == pytest.approx(list(mean.loc["joint"]))
        else:  # task j right after stage j
            assert [float(s.get_xdata()[0]) for s in stars] == [1.0, 2.0, 3.0]
            assert [float(s.get_ydata()[0]) for s in stars] == pytest.approx(
                [mean.loc[t, t] for t in mean.columns])
    assert {"hogwarts", "middle-earth", "galaxy", "right after its own stage"} <= set(legend_texts(fig))
    assert not any(ax.get_legend() for ax in fig.axes)


def test_matrix_panels_follow_the_streams_split_order_and_box_the_own_stage(loaded):
    found, labels = loaded
    naive = [r for r, label in zip(found, labels) if r.summary["strategy"] == "naive"]
    fig = matrix_heatmap(naive, "naive")
    heat = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heat] == ["trained examples", "reversed pairs", "held-out pairs"]
    assert not any("matrix" in ax.get_title() for ax in heat)
    boxes = [(p.get_x(), p.get_y()) for p in heat[0].patches if p.get_edgecolor()[:3] != (1, 1, 1)]
    assert sorted((round(x), round(y)) for x, y in boxes) == [(0, 1), (1, 2), (2, 3)]  # R[j, j]: row j+1
    assert "mean of 2 runs" in fig.get_suptitle()


def test_learning_vs_forgetting_of_many_groups_shares_x_and_puts_one_point_per_learning_rate(loaded):
    found, labels = loaded
    table = compare_table(found)
    primary = {k: c for k, c in probe_metrics(found).items() if c.get("primary")}
    fig = learning_vs_forgetting(table, primary, found, labels)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2 and panels[0].get_shared_x_axes().joined(panels[0], panels[1])
    assert "retention" in panels[0].get_ylabel() and "−BWT" in panels[1].get_ylabel()
    # a qualifier stays on one line: the label breaks before "(1 = nothing lost)", not inside it
    assert all(line.count("(") == line.count(")") for ax in panels for line in ax.get_ylabel().split("\n"))
    trained = table[table["strategy"] != "base"]
    for ax, key in zip(panels, ("retention", "-bwt")):
        lines = {to_hex(line.get_color()): line for line in ax.get_lines() if line.get_marker() == "o"}
        points = sorted((round(float(x), 6), round(float(y), 6)) for line in lines.values()
                        for x, y in zip(line.get_xdata(), line.get_ydata()))
        values = trained["retention"] if key == "retention" else -trained["bwt"]
        assert points == sorted((round(float(x), 6), round(float(y), 6)) for x, y in zip(trained["learned"], values)
                                if np.isfinite(y))  # joint's one pooled stage has no BWT: no point
        # one line per strategy, a point per learning rate (lora: two)
        assert sorted(len(line.get_xdata()) for line in lines.values()) == ([1, 1, 2] if key == "retention" else [1, 2])
        # the swept series' points say their learning rates; the one-point series say theirs in the legend
        lora = trained.loc[trained["strategy"] == "lora", "lr"]
        assert sorted(t.get_text() for t in ax.texts) == sorted(lora.astype(str)) and len(lora) == 2
    one_point = {f"{r['strategy']} (lr {r['lr']})" for _, r in trained.iterrows() if r["strategy"] != "lora"}
    assert one_point | {"lora", "base (no training)", "no forgetting (0)"} <= set(legend_texts(fig))
    assert "Student-t 95%" in legend_title(fig) and not any(ax.get_legend() for ax in fig.axes)


def test_a_swept_series_keeps_one_legend_entry_where_a_panel_lacks_one_of_its_points(loaded):
    found, labels = loaded
    table = compare_table(found)
    primary = {k: c for k, c in probe_metrics(found).items() if c.get("primary")}
    table.loc[table.index[table["strategy"] == "lora"][0], "bwt"] = np.nan  # one lora point has no BWT
    fig = learning_vs_forgetting(table, primary, found, labels)
    entries = [t for t in legend_texts(fig) if t.startswith("lora")]
    assert entries == ["lora"]
    bwt = [ax for ax in fig.axes if ax.get_visible()][1]
    kept = table[(table["strategy"] == "lora") & table["bwt"].notna()]["lr"].astype(str)
    assert [t.get_text() for t in bwt.texts] == list(kept)  # its remaining point still says its learning rate


def test_axis_labels_break_between_words_and_parenthesised_groups():
    from continual.plots import _wrap
    assert _wrap("retention of original capability (1 = nothing lost) (↑ better)").split("\n") == [
        "retention of original capability", "(1 = nothing lost) (↑ better)"]
    assert _wrap("short label (↑ better)") == "short label (↑ better)"
    # a group longer than a line is wrapped as words, continuing the line before it; nothing is dropped
    text = "a (group of many words that cannot fit on one line of forty) end"
    lines = _wrap(text).split("\n")
    assert " ".join(lines) == text and all(len(line) <= 40 for line in lines) and lines[0].startswith("a (group")
    assert _wrap("unbalanced (paren and then a few words more") == "unbalanced (paren and then a few words\nmore"


def test_learning_vs_forgetting_of_one_run_is_its_stage_by_stage_trajectory(runs):
    run = find_runs([runs / "naive" / "seed0"])
    table = compare_table(run)
    primary = {k: c for k, c in probe_metrics(run).items() if c.get("primary")}
    fig = learning_vs_forgetting(table, primary, run, group_labels(run))
    retention, bwt = [ax for ax in fig.axes if ax.get_visible()]
    steps = stage_trajectory(run[0], ["retention"])
    line = next(line for line in retention.get_lines() if line.get_marker() == "o")
    assert list(line.get_xdata()) == pytest.approx([0.0] + list(steps["learned"]))  # the base model first
    assert line.get_ydata()[-1] == pytest.approx(run[0].summary["probe"]["retention"])
    line = next(line for line in bwt.get_lines() if line.get_marker() == "o")
    assert len(line.get_xdata()) == 2  # -BWT is undefined at the first stage
    assert line.get_xdata()[-1] == pytest.approx(learned(run[0]))
    assert line.get_ydata()[-1] == pytest.approx(-run[0].summary["bwt"])
    assert [t.get_text() for t in bwt.texts] == ["middle-earth", "galaxy"]
    assert "naive: stage by stage" in legend_texts(fig) and "stages of one run" in legend_title(fig)


def test_the_plots_of_a_real_run_draw_chance_loss_and_the_relation_graph(tiny_run):
    run = find_runs([tiny_run.path])
    labels = group_labels(run)
    fig = forgetting_curves(run, labels)
    assert 0.5 in horizontal_lines(fig.axes[0]) and "chance (0.50)" in legend_texts(fig)  # two candidates
    fig = probe_curves(run, labels)
    cloze = next(ax for ax in fig.axes if ax.get_title() == "cloze")
    assert 0.25 in horizontal_lines(cloze) and cloze.get_ylim() == pytest.approx((-0.02, 1.02))  # 4-way cloze
    # the tiny model is at chance on the cloze items: its retention is undefined, said in the figure, no panel
    assert "retention" not in [ax.get_title() for ax in fig.axes]
    assert "no value for these runs: retention" in legend_title(fig)
    fig = learning_vs_forgetting(compare_table(run), {"retention": run[0].probe_columns["retention"]}, run, labels)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1 and "no panel for retention" in legend_title(fig)
    assert not [t for ax in fig.axes for t in ax.texts if "undefined" in t.get_text()]  # no empty box
    fig = loss_curves(run, labels)
    losses = run[0].losses
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 0 and line.get_marker() == "."]
    assert [len(line.get_xdata()) for line in lines] == list(losses.groupby("stage", sort=False).size())
    assert np.concatenate([line.get_ydata() for line in lines]) == pytest.approx(losses["loss"].to_numpy())
    assert list(np.concatenate([line.get_xdata() for line in lines])) == list(range(1, len(losses) + 1))
    assert legend_texts(fig) == ["hogwarts", "middle-earth", "galaxy"]
    from continual.streams.facts_graph import relation_graph
    fig = relation_graph(run[0])
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(":")[0] for t in titles] == [f"{w}, {s}" for s in ("trained pairs", "held-out pairs")
                                                 for w in ("hogwarts", "middle-earth", "galaxy")]
    predictions = run[0].predictions
    for title in titles:
        world, split = title.split(",")[0], "train" if "trained" in title else "heldout"
        n = len(predictions[(predictions["task"] == world) & (predictions["split"] == split)])
        assert title.endswith(f"/{n} right")
    assert any(text.startswith("camp of Harry Potter") for text in legend_texts(fig))
