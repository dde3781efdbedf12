import os
import subprocess
import sys

import pytest

from continual.cli import main

FAST = ["--model", "tiny", "--steps", "2", "--stream-option", "facts.camp_size=2", "--probe-option",
        "perplexity.tokens=100", "--probe-option", "kl.tokens=20", "--no-progress"]


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own type errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_names_streams_strategies_and_models(capsys):
    code, out, err = run_cli(capsys, "list")
    assert code == 0
    assert "examples/s" not in err, err  # no datasets progress bar from building the streams
    for word in ("facts", "hogwarts", "middle-earth", "galaxy", "naive", "smollm2-135m", "tiny", "[default]"):
        assert word in out


@pytest.fixture
def hub_offline(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


BAD = [
    (["--stream", "poems"], "unknown stream 'poems'"),
    (["--strategy", "magic"], "unknown strategy 'magic'"),
    (["--strategy", "naive,naive"], "name each strategy once"),
    (["--model", "./no/such/folder"], "model path './no/such/folder' does not exist"),
    (["--model", "EleutherAI/pythia-160m"], "from the Hugging Face hub"),
    (["--steps", "0"], "steps must be at least 1"),
    (["--batch-size", "-3"], "batch_size must be at least 1"),
    (["--lr", "0"], "lr must be greater than 0"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--probe-option", "kl.tokens=0"], "kl.tokens must be at least 1"),
    (["--probe-option", "cloze.tokens=5"], "unknown option(s) cloze.tokens"),
    (["--probe", "cloze,magic"], "unknown probe 'magic'"),
    (["--stream-option", "facts.camp_size=12"], "facts.camp_size must be at most 8"),
    (["--stream-option", "facts.campsize=4"], "unknown option(s) facts.campsize"),
    (["--stream-option", "topics.train_size=4"], "names none of facts"),
    (["--stream-option", "camp_size"], "must read name.option=value"),
    (["--strategy", "replay", "--strategy-option", "replay.ratio=2"], "replay.ratio must be at most 1"),
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["--tasks", "galaxy,narnia"], "must name distinct tasks of stream 'facts'"),
    (["--scheduler", "sawtooth"], "unknown scheduler 'sawtooth'"),
    (["--general-text", "web"], "general_text must be one of offline, hub"),
    (["--config", "/no/such/file.yaml"], "config file '/no/such/file.yaml' does not exist"),
    (["--chat-template"], "no chat template"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m.split()[0] + "-" + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_input_is_one_clear_line_and_writes_nothing(capsys, tmp_path, hub_offline, extra, message):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "run", *FAST, "--out", str(out), *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("continual: error: ") and message in lines[0], err
    assert not out.exists()


def test_type_errors_are_one_line_naming_the_option(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--steps", "many", "--out", str(tmp_path / "x"))
    assert code == 2 and err.strip() == "continual: error: steps must be int, got 'many'"
    assert not (tmp_path / "x").exists()


def test_help_shows_each_default_once_in_the_users_syntax(capsys):
    import re
    for command in ("run", "bench"):
        entries = re.split(r"\n  (?=-)", _help(capsys, command))[1:]  # one entry per option
        assert len(entries) > 10
        for entry in entries:
            text = " ".join(entry.split())
            assert text.count("(default: ") <= 1, text
            assert "(default: None)" not in text and "(default: )" not in text and "(default: True)" not in text, text
    main_help = " ".join(_help(capsys, "run").split())
    assert "--lr LR peak learning rate (default: the strategy's own" in main_help
    assert "--tasks TASKS comma-separated task names to train, in this order (default: the stream's tasks" in main_help
    assert "--packing, --no-packing" in main_help and "(default: off)" in main_help
    assert "--stream-option KEY=VALUE" in main_help and "(repeatable)" in main_help
    assert "--steps STEPS" in " ".join(_help(capsys, "bench").split())


def test_a_percent_sign_reads_as_one_in_the_command_list_and_in_the_command_help(capsys):
    # argparse %-formats a subcommand's help but not its description: one string serves both
    listing = " ".join(_help(capsys).split())
    page = " ".join(_help(capsys, "compare").split())
    for text in (listing, page):
        assert "mean ± 95% t-interval" in text and "%%" not in text, text


def _help(capsys, *command):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return capsys.readouterr().out


def test_out_that_is_a_file_or_holds_other_results_is_refused(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    code, _, err = run_cli(capsys, "run", *FAST, "--out", str(afile))
    assert code == 2 and "is a file" in err and afile.read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text("{}")
    code, _, err = run_cli(capsys, "run", *FAST, "--out", str(other))
    assert code == 2 and "no config.yaml" in err and sorted(os.listdir(other)) == ["summary.json"]


def test_the_installed_entry_point_runs_and_prints_the_matrix(tmp_path):
    out = tmp_path / "cli"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-m", "continual", "run", *FAST, "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "accuracy matrix" in done.stdout and "GEM-style FWT" in done.stdout and "Chaudhry" in done.stdout
    assert "hogwarts" in done.stdout and (out / "summary.json").is_file()
    again = subprocess.run([sys.executable, "-m", "continual", "run", *FAST, "--seed", "5", "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0 and "different run" in again.stderr


@pytest.mark.parametrize("text,message", [
    ("warmup_steps: [1, 2]\n", "warmup_steps must be int"),
    ("stepz: 3\n", "unknown option(s) stepz"),
    ("- steps\n", "must be a mapping"),
    ("steps: 3\n  lr: [\n", "is not valid YAML"),
    ("lr: fast\n", "lr must be float or null, got 'fast'"),
    ("strategy_options: [1]\n", "strategy_options must be dict"),
])
def test_bad_config_files_are_one_clear_line(capsys, tmp_path, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    code, _, err = run_cli(capsys, "run", *FAST, "--out", str(tmp_path / "out"), "--config", str(config))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_config_file_values_apply_and_flags_override_them(tmp_path, monkeypatch):
    import continual.runner
    seen = {}
    monkeypatch.setattr(continual.runner, "run", lambda config, **kwargs: seen.setdefault("config", config) and [])
    config = tmp_path / "run.yaml"
    config.write_text("steps: 7\nlr: 1e-4\nseed: 3\nmodel: tiny\nstrategy_options: {replay.ratio: 0.5, "
                      "replay.buffer_size: 10}\n")
    assert main(["run", "--config", str(config), "--seed", "4", "--out", str(tmp_path / "o"), "--strategy", "replay",
                 "--strategy-option", "replay.ratio=0.1"]) == 0
    c = seen["config"]
    assert (c.steps, c.lr, c.seed, c.model, c.batch_size) == (7, 1e-4, 4, "tiny", 8)
    assert c.strategy_options == {"replay.ratio": "0.1", "replay.buffer_size": 10}  # typed when the run resolves
