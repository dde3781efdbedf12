import struct
import xml.etree.ElementTree as ET

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
