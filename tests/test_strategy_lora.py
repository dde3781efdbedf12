import torch

from continual.models import load_model
from strategies.lora import Lora, LoraOptions
from tests.conftest import StageRunner


def test_lora_trains_one_adapter_through_all_stages_and_freezes_the_base():
    runner = StageRunner(Lora(LoraOptions(r=4, target_modules="q_proj,v_proj")), steps=3, lr=5e-2)
    trainable = [n for n, p in runner.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(("q_proj" in n or "v_proj" in n) for n in trainable)
    runner.stage(0)
    after0 = {n: p.detach().clone() for n, p in runner.model.named_parameters() if "lora_" in n}
    runner.stage(1)
    assert any(not torch.equal(after0[n], p) for n, p in runner.model.named_parameters() if "lora_" in n)
    original = load_model("tiny", seed=0).model.state_dict()
    for name, tensor in runner.model.get_base_model().state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, original[name.replace(".base_layer", "")]), name
