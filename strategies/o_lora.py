"""O-LoRA (Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual Learning"): a new LoRA
adapter per task; the earlier adapters stay frozen and active, so the deployed model is the base plus the sum of
every task's adapter (no task id at inference, unlike lora-isolation). Training task t adds to the loss

    lambda_orth * sum over adapted layers and earlier tasks s < t of sum_ij |(A_t A_s^T)_ij|
    + lambda_l2 * sum over task t's adapter matrices of ||W||_2

the first pulling the new adapter's input subspace (the rows of A_t) orthogonal to every earlier one's, the second
(off by default, as in the authors' scripts) keeping the new adapter small. The authors' scripts: lambda_orth 0.5,
lambda_l2 0, learning rate 1e-3, one epoch, T5-large and LLaMA-7B, LoRA on the attention's q and v (here every
linear layer by default, like the lora strategy; ``o-lora.target_modules=q_proj,v_proj`` for the paper's choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate.utils import extract_model_from_parallel
from peft import get_peft_model

from continual.options import option
from strategies.base import BASE_WEIGHTS, MODEL_WRAPPER, ONE_ADAPTER, Strategy
from strategies.lora import LoraOptions


@dataclass
class OLoraOptions(LoraOptions):
    r: int = option(8, "rank of each task's adapter", low=1)
    lambda_orth: float = option(0.5, "weight of the orthogonality term sum |A_t A_s^T|", low=0)
    lambda_l2: float = option(0.0, "weight of the new adapter's L2 norm", low=0)


def adapter_name(index: int) -> str:
    return f"task_{index}"


def lora_layers(model):
    return [m for m in extract_model_from_parallel(model).modules() if hasattr(m, "lora_A")]


def orthogonality(model, new: str, old: list[str]) -> torch.Tensor:
    """sum over adapted layers and earlier adapters of sum |A_new A_old^T| (zero when every row of the new A is
    orthogonal to every row of the earlier ones)."""
    total = None
    for layer in lora_layers(model):
        if new not in layer.lora_A:
            continue
        a_new = layer.lora_A[new].weight
        for name in old:
            term = (a_new @ layer.lora_A[name].weight.T).abs().sum()
            total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def l2_norm(model, new: str) -> torch.Tensor:
    """sum of the Frobenius norms of the new adapter's A and B matrices (the authors' ||theta_new||_2)."""
    norms = [torch.linalg.matrix_norm(layer.lora_A[new].weight) + torch.linalg.matrix_norm(layer.lora_B[new].weight)
             for layer in lora_layers(model) if new in layer.lora_A]
    return torch.stack(norms).sum() if norms else torch.zeros(())


class OLora(Strategy):
    name = "o-lora"
    Config = OLoraOptions
    default_lr = 1e-3
    claims = frozenset({MODEL_WRAPPER})
    removes = frozenset({ONE_ADAPTER, BASE_WEIGHTS})
    packing_safe = True

    def __init__(self, config=None):
        super().__init__(config)
        self.adapters = 1  # adapters made so far (task_0 at setup)
        self.current = 0

    def setup(self, model):
        return get_peft_model(model, self.config.peft_config(), adapter_name=adapter_name(0))

    def _activate(self, model, upto: int) -> None:
        """Adapters task_0..task_upto active in the forward; only task_upto trainable."""
        for index in range(self.adapters, upto + 1):
            model.add_adapter(adapter_name(index), self.config.peft_config())
        self.adapters = max(self.adapters, upto + 1)
        names = [adapter_name(i) for i in range(upto + 1)]
        model.base_model.set_adapter(names)  # marks every active adapter trainable: freeze the earlier ones again
        if upto:
            model.base_model.set_requires_grad(names[:-1], requires_grad=False)

    def before_stage(self, model, ctx):
        self.current = ctx.index
        self._activate(model, ctx.index)

    def loss_terms(self, model, inputs, outputs):
        new, old = adapter_name(self.current), [adapter_name(i) for i in range(self.current)]
        terms = {}
        if old and self.config.lambda_orth:
            terms["olora_orth"] = self.config.lambda_orth * orthogonality(model, new, old)
        if self.config.lambda_l2:
            terms["olora_l2"] = self.config.lambda_l2 * l2_norm(model, new)
        return terms

    def probe_model_note(self) -> str:
        return "the base with every task's adapter so far (their sum: no task id)"

    def state_dict(self):
        return {"adapters": self.adapters, "current": self.current}

    def load_state_dict(self, state, model):
        # recreate the adapters the checkpoint's weights hold, before they are loaded
        self._activate(model, state["adapters"] - 1)
        self.current = state["current"]
