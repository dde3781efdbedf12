"""lm-evaluation-harness as a probe, offline, on task YAMLs over JSON files written here: its columns reach
probe.csv, summary.json (the general-ability delta) and the comparison table; hub-backed tasks fail in one line."""

import json

import pytest

import continual
from continual.compare import compare_table
from continual.errors import ContinualError
from continual.probes import ProbeContext, make_probes

pytest.importorskip("lm_eval", reason="lm-eval is an optional extra (make install installs it)")

ITEMS = [{"question": "The capital of France is", "choices": ["Paris", "Rome", "Oslo"], "answer": 0},
         {"question": "Two plus two is", "choices": ["four", "five", "six"], "answer": 0},
         {"question": "The sky is", "choices": ["green", "blue", "red"], "answer": 1},
         {"question": "Water freezes at zero degrees", "choices": ["Celsius", "Kelvin", "Rankine"], "answer": 0}]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lmeval")
    data = folder / "tiny.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in ITEMS))
    (folder / "tiny_cloze.yaml").write_text(f"""task: tiny_cloze
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    return folder


def test_a_run_reports_the_tasks_scores_and_the_general_ability_delta(tasks, tmp_path):
    result = continual.run(stream="facts", strategy="naive", model="tiny", steps=2, batch_size=4, lr=1e-2,
                           stream_options={"facts.camp_size": 2}, probe="cloze,lm-eval:tiny_cloze+continual_cloze",
                           probe_include=str(tasks), probe_limit=0, progress=False,  # = lm-eval.include / .limit
                           plots=False, out=str(tmp_path / "run"))
    probe = result.probe
    for column in ("tiny_cloze_acc", "tiny_cloze_acc_stderr", "continual_cloze_acc", "lmeval_mean", "lmeval_delta"):
        assert column in probe.columns, column
    assert probe["lmeval_delta"].iloc[0] == 0.0
    assert set(probe["tiny_cloze_acc"]) <= {0.0, 0.25, 0.5, 0.75, 1.0}  # four items
    # the shipped continual_cloze task is the cloze probe's own items, scored the same way
    assert probe["continual_cloze_acc"].tolist() == pytest.approx(probe["cloze"].tolist(), abs=1e-9)
    assert result.config["probe_options"]["lm-eval.limit"] == 0 and result.config["probe_limit"] is None
    s = result.summary
    assert s["probe"]["lmeval_delta"] == pytest.approx(probe["lmeval_delta"].iloc[-1])
    assert "general-ability delta" in s["conventions"]["lmeval_delta"]
    table = compare_table([result.path])
    assert {"lmeval_mean", "lmeval_delta", "tiny_cloze_acc"} <= set(table.columns)


def test_presets_expand_and_an_unreachable_hub_task_is_one_line(monkeypatch, tiny):
    from continual.probes.lm_eval import task_names
    assert task_names("biderman") == ["hellaswag", "arc_challenge", "winogrande"]
    assert task_names("mmlu+gsm8k,boolq") == ["mmlu", "gsm8k", "boolq"]
    import datasets
    import huggingface_hub
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    probe = make_probes("lm-eval:arc_easy")[0]
    with pytest.raises(ContinualError, match="the hub cannot be reached.*lm-eval.include"):
        probe.setup(ProbeContext(tokenizer=tiny.tokenizer, general_text="offline", batch_size=8, seed=0))


def test_unknown_tasks_are_refused_with_the_way_out(tiny, tasks):
    probe = make_probes("lm-eval:no_such_task_anywhere", {"lm-eval.include": str(tasks)})[0]
    with pytest.raises(ContinualError, match="lm-eval knows no task no_such_task_anywhere"):
        probe.setup(ProbeContext(tokenizer=tiny.tokenizer, general_text="offline", batch_size=8, seed=0))
