"""Model folders as users have them: random GPT-2 (Conv1D layers) and GPT-NeoX models saved with save_pretrained
train under every strategy; a folder without tokenizer files, and LoRA targets a model lacks, are refused in one
line before anything is written."""

import json
import math

import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, OPTConfig, OPTForCausalLM

from continual.cli import main
from continual.models import build_tiny_tokenizer
from strategies import STRATEGIES

WORDS = {"space": ["rocket", "orbit", "planet"], "food": ["bread", "soup", "apple"],
         "music": ["guitar", "drum", "song"], "sport": ["goal", "race", "match"]}


def tiny_config(arch, tokenizer):
    ids = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if arch == "gpt2":
        return GPT2LMHeadModel, GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256, **ids)
    if arch == "gpt-neox":
        return GPTNeoXForCausalLM, GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                 intermediate_size=64, max_position_embeddings=256, **ids)
    return OPTForCausalLM, OPTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                                     word_embed_proj_dim=32, max_position_embeddings=256, dropout=0.1, **ids)


def model_folder(path, arch, tokenizer=True):
    tok = build_tiny_tokenizer()
    cls, config = tiny_config(arch, tok)
    torch.manual_seed(0)
    cls(config).save_pretrained(path)
    if tokenizer:
        tok.save_pretrained(path)
    return path


def notes_stream(folder):
    rows = [{"text": f"a note on the {w} and the {WORDS[lab][(i + 1) % 3]} {i}", "label": lab}
            for lab in WORDS for i in range(6) for w in [WORDS[lab][i % 3]]]
    pd.DataFrame(rows).to_csv(folder / "notes.csv", index=False)
    path = folder / "notes.yaml"
    path.write_text("source: notes.csv\ntemplate: \"Note: {text}\\nTopic:\"\ntrain_size: 4\ntest_size: 2\n"
                    "verbalizer: {space: ' space', food: ' food', music: ' music', sport: ' sport'}\n"
                    "tasks:\n  - {name: a, labels: [space, food]}\n  - {name: b, labels: [music, sport]}\n")
    return path


RUN = ["--steps", "1", "--batch-size", "2", "--eval-cap", "2", "--max-length", "32", "--eval-batch-size", "8",
       "--probe", "perplexity", "--probe-option", "perplexity.tokens=16", "--no-progress", "--no-plots"]
# small, fast settings for the strategies whose defaults do more work per step
OPTIONS = ["--strategy-option", "lora.r=2", "--strategy-option", "ewc.fisher_samples=2",
           "--strategy-option", "agem.memory_batch=2", "--strategy-option", "generative-replay.samples=2",
           "--strategy-option", "generative-replay.max_new_tokens=4"]


@pytest.mark.parametrize("arch", ["gpt2", "gpt-neox"])
def test_every_strategy_trains_a_saved_random_model(tmp_path, capsys, arch):
    folder = model_folder(tmp_path / arch, arch)
    stream = notes_stream(tmp_path)
    # peft's OSF adapts nn.Linear layers only; GPT-2's are Conv1D (refused below, in one line)
    names = [n for n in STRATEGIES if not (arch == "gpt2" and n == "osf")]
    out = tmp_path / "runs"
    assert main(["run", "--stream", str(stream), "--model", str(folder), "--strategy", ",".join(names),
                 "--out", str(out), *RUN, *OPTIONS]) == 0, capsys.readouterr().err
    for name in names:
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["status"] == "completed", name
        assert 0 < summary["trainable_parameters"] <= summary["total_parameters"], name
        if name in ("lora", "lora-isolation", "o-lora", "lora-merge"):  # adapters only: a small share trains
            assert summary["trainable_parameters"] < summary["total_parameters"] / 2, name
        stages = ["joint"] if name == "joint" else ["a", "b"]  # joint trains every task in one stage
        assert list(pd.read_csv(out / name / "matrix.csv", index_col="after").index) == ["base", *stages], name


def test_a_folder_without_tokenizer_files_is_refused_in_one_line(tmp_path, capsys):
    folder = model_folder(tmp_path / "gpt2", "gpt2", tokenizer=False)
    out = tmp_path / "out"
    assert main(["run", "--stream", str(notes_stream(tmp_path)), "--model", str(folder), "--out", str(out),
                 *RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("continual: error: ")
    assert "has no tokenizer files" in err and "tokenizer.save_pretrained" in err
    assert not out.exists()


def test_folders_without_a_config_or_with_another_models_tokenizer_are_refused(tmp_path):
    from continual.errors import ContinualError
    from continual.models import load_model
    folder = model_folder(tmp_path / "gpt2", "gpt2")
    (folder / "config.json").unlink()
    with pytest.raises(ContinualError, match="has no config.json .it has: .*model.safetensors"):
        load_model(str(folder))
    small = tmp_path / "small"  # 64 embeddings, but the tokenizer's ids reach 511
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=64)).save_pretrained(small)
    build_tiny_tokenizer().save_pretrained(small)
    with pytest.raises(ContinualError, match="beyond the model's 64 embeddings"):
        load_model(str(small))


def test_lora_targets_the_model_lacks_are_refused_naming_its_linear_modules(tmp_path, capsys):
    folder = model_folder(tmp_path / "gpt2", "gpt2")
    out = tmp_path / "out"
    assert main(["run", "--stream", str(notes_stream(tmp_path)), "--model", str(folder), "--out", str(out),
                 "--strategy", "lora", "--strategy-option", "lora.target_modules=q_proj", *RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("continual: error: ")
    assert "lora.target_modules='q_proj': q_proj matches no linear layer of GPT2LMHeadModel" in err
    assert "c_attn" in err and "c_fc" in err and "lm_head" not in err
    assert not out.exists()


def test_osf_on_conv1d_layers_is_refused_before_anything_is_written(tmp_path, capsys):
    folder = model_folder(tmp_path / "gpt2", "gpt2")
    out = tmp_path / "out"
    assert main(["run", "--stream", str(notes_stream(tmp_path)), "--model", str(folder), "--out", str(out),
                 "--strategy", "osf", *RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "osf.target_modules: GPT2LMHeadModel has no Linear layers" in err
    assert "c_attn" in err and not out.exists()


def test_dpo_first_loss_is_ln2_on_a_model_with_functional_dropout(tmp_path, capsys):
    """OPT applies dropout with nn.functional (trl's disable_dropout only zeroes nn.Dropout modules): with it on,
    the policy's first log-probs differ from the reference's and the first DPO loss is not ln 2."""
    folder = model_folder(tmp_path / "opt", "opt")
    out = tmp_path / "out"
    assert main(["run", "--stream", str(notes_stream(tmp_path)), "--model", str(folder), "--out", str(out),
                 "--strategy", "dpo", "--tasks", "a", *RUN]) == 0, capsys.readouterr().err
    losses = pd.read_csv(out / "losses.csv")
    assert math.isclose(losses["loss"].iloc[0], math.log(2), abs_tol=1e-4)
