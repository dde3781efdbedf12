import base64
import os
import re
import shutil
from html.parser import HTMLParser

import pytest

from continual.cli import main
from continual.compare import compare_table
from continual.errors import ContinualError
from continual.report import write_report
from tests.test_compare import synthetic_run


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.refs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [(tag, k, v or "") for k, v in attrs if k in ("src", "href", "srcset", "data", "action")]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    for seed in range(2):
        synthetic_run(root / "naive" / f"seed{seed}", "naive", seed)
    synthetic_run(root / "ewc" / "seed0", "ewc", 0)
    return root


def test_report_is_self_contained_and_holds_tables_plots_and_configs(results, tmp_path):
    path = write_report([results], tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    parsed = Collect()
    parsed.feed(text)
    assert "link" not in parsed.tags and "script" not in parsed.tags and "iframe" not in parsed.tags
    assert not re.search(r"url\(", text)  # no stylesheet fetches either
    images = [v for tag, k, v in parsed.refs if tag == "img"]
    assert len(images) >= 5 and len(images) == len(parsed.refs)  # every reference is an embedded image
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    table = compare_table([results])
    naive = table[table["strategy"] == "naive"].iloc[0]
    assert f"{naive['acc']:.3f} ± {naive['acc_ci95']:.3f}" in text
    assert "config_hash" in text and text.count("<details>") == 4  # the definitions, one config per run
    assert "Student-t 95%" in text


def test_report_command_and_its_errors(results, tmp_path, capsys):
    assert main(["report", str(results / "ewc"), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 10000 and "report written" in capsys.readouterr().out
    with pytest.raises(ContinualError, match="is a directory"):
        write_report([results], tmp_path)


def test_the_report_of_one_run_embeds_its_own_plots(results, tmp_path, monkeypatch):
    import continual.plots
    import continual.report
    run = results / "ewc" / "seed0"
    continual.plots.write_plots([run], run / "plots")
    drawn = (run / "plots" / "probe.png").read_bytes()

    def no_drawing(*args, **kwargs):
        raise AssertionError("the report redrew plots that exist")
    monkeypatch.setattr(continual.plots, "write_plots", no_drawing)
    text = write_report([run], tmp_path / "one.html").read_text(encoding="utf-8")
    assert base64.b64encode(drawn).decode("ascii") in text


def test_the_summary_comes_first_with_directions_and_no_filler_base_row(results, tmp_path):
    text = write_report([results], tmp_path / "report.html").read_text(encoding="utf-8")
    summary, plots = text.index("<h2>Summary</h2>"), text.index("<h2>Plots</h2>")
    table = text[summary:text.index("</table>", summary)]
    assert summary < plots and "<table" in table
    headers = re.findall(r"<th>(.*?)</th>", table)
    assert headers[:3] == ["strategy", "runs", "ACC ↑"]
    assert {"BWT ↑", "forgetting ↓", "retention ↑", "ACC held-out ↑", "wall time (s) ↓"} <= set(headers)
    assert not any("_" in h for h in headers)  # human names, no column keys
    cells = re.findall(r"<td>(.*?)</td>", table)
    assert "base" not in cells and {"naive", "ewc"} <= set(cells)
    base = compare_table([results]).iloc[0]
    assert f"The base model (before any training): ACC {base['acc']:.3f}" in text  # said once, above the table
    # the definitions are folded away; the plots all show at one width
    definitions = text.index("<summary>Definitions and conventions</summary>")
    assert text.rfind("<details>", 0, definitions) > summary and "GEM" in text[definitions:plots]
    assert text.count("<img ") == text.count('<img class="plot" ') and "img.plot { width: 760px" in text


def test_no_absolute_local_path_is_in_the_report(results, tmp_path):
    out = tmp_path / "deep" / "report.html"
    text = write_report([results], out).read_text(encoding="utf-8")
    assert str(results) not in text and str(tmp_path) not in text
    assert not re.search(r"(?<![\w.])/(tmp|home|root|Users|private|var)/", text)
    relative = os.path.relpath(results / "naive" / "seed0", out.parent)
    assert f"— {relative}</summary>" in text and "out: " + relative in text


def test_a_folder_report_draws_its_plots_once_and_then_embeds_them(results, tmp_path, monkeypatch, capsys):
    import continual.plots
    folder = tmp_path / "runs"
    shutil.copytree(results, folder)
    assert main(["report", str(folder)]) == 0
    assert {"probe.png", "forgetting_curves.png", "learning_vs_forgetting.png"} <= {
        p.name for p in (folder / "plots").iterdir()}
    first = (folder / "report.html").read_text(encoding="utf-8")

    def no_drawing(*args, **kwargs):
        raise AssertionError("the report redrew plots that exist")
    monkeypatch.setattr(continual.plots, "write_plots", no_drawing)
    assert main(["report", str(folder)]) == 0
    again = (folder / "report.html").read_text(encoding="utf-8")
    images = re.compile(r'src="(data:image/png;base64,[^"]+)"')
    assert images.findall(again) == images.findall(first)


def test_the_printed_run_says_n_a_for_undefined_values_within_100_columns(results, tmp_path, capsys):
    from continual.cli import print_result
    from continual.results import Run
    from tests.test_compare import synthetic_run
    joint = Run.load(synthetic_run(tmp_path / "joint", "joint", 0) or tmp_path / "joint")
    run = Run.load(results / "ewc" / "seed0")
    for shown in (joint, run):
        print_result(shown)
    out = capsys.readouterr().out
    assert "bwt" in out and "n/a" in out  # the pooled reference has no BWT
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
    lines = [line for line in out.splitlines() if not line.startswith("== ")]  # the header names the path
    assert max(map(len, lines)) <= 100, max(lines, key=len)
