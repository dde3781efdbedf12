"""Online EWC (Kirkpatrick et al. 2017; online form of Schwarz et al. 2018) for causal LMs with dict batches.

After each stage, the diagonal empirical Fisher of the task is estimated from the task's training data: the squared
gradient of the answer's log-likelihood, sum_t log p(y_t | x, y_<t) over its answer tokens (Kirkpatrick et al.'s
quantity; the gradient of the mean token loss would give 1/T^2 of it for a T-token answer), one example at a time
by default (``fisher_batch_size`` > 1 squares the gradient of the mean over a micro-batch's examples instead:
cheaper, and a smaller estimate). Examples are truncated to the run's ``max_length`` (the tokens training saw);
one with no answer token left is skipped and counted (``fisher_log``, RUN/strategy/ewc_fisher.csv), never averaged
in as a zero. It is folded into a running Fisher, F <- gamma * F + F_task, and the weights are kept as the anchor.
After the run's last stage nothing is estimated: no later stage would be penalised with it.
Every later step adds

    (lambda / 2) * sum_i F_i (theta_i - anchor_i)^2

over the trainable parameters. Its gradient, lambda * F * (theta - anchor), is added in closed form after the
step's backward pass (``after_backward``), before clipping: the same update as autograd's, without building a graph
over every parameter (that graph made an EWC step 1.68x a naive one on a CPU; docs/benchmarks.md). With
``general`` the original model's Fisher on general English text (the strategies' split, disjoint from the probe's)
anchors the original weights too, weighted by ``general_lambda``.

Under data parallelism (accelerate launch) each process squares the gradients of its share of the (micro-)batches
and the sums are all-reduced, so every process holds the same Fisher, equal to the single-process one up to the order
of the float additions, for 1/N of the backward passes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from accelerate.utils import extract_model_from_parallel

from continual import distributed
from continual.options import Options, option
from continual.training import IGNORE, CompletionCollator, tokenize_completions
from strategies.base import Strategy, trainable_parameters

log = logging.getLogger(__name__)


@dataclass
class EWCOptions(Options):
    # lambda's defaults were 1000 for the Fisher of the mean token loss; the log-likelihood's Fisher is T^2 times
    # that for a T-token answer: 1000 / 4 for the built-in streams' 2-token answers (" enemy." is 2 tokens; measured
    # Fisher-mass ratio 4.0 on facts), and 1000 / ~450 for general text (completions of 14.5 words on average,
    # E[words^2] = 269, ~1.3 SmolLM2 tokens a word; the tiny tokenizer's 2.9 tokens a word measured a ratio of 1711)
    lam: float = option(250.0, "penalty weight lambda (on the Fisher of the answer's log-likelihood)", low=0)
    gamma: float = option(1.0, "decay of the running Fisher at each new stage (online EWC)", low=0, high=1)
    fisher_batch_size: int = option(1, "examples per squared gradient: 1 = per-example empirical Fisher", low=1)
    fisher_samples: int = option(0, "examples used for the Fisher (0 = all)", low=0)
    general: bool = option(False, "also anchor the original weights with a Fisher on general text")
    general_lambda: float = option(2.0, "penalty weight for the general-text anchor (log-likelihood Fisher of "
                                   "~20-token passages)", low=0)
    general_samples: int = option(64, "general-text passages for that Fisher", low=1)


FISHER_CONVENTION = ("diagonal empirical Fisher of the answer's log-likelihood: per trainable parameter, the mean "
                     "over (micro-)batches of the squared gradient of sum_t log p(answer token t | prompt, earlier "
                     "answer tokens), summed over the answer's tokens (Kirkpatrick et al. 2017), not of the mean "
                     "token loss (which is 1/T^2 of it for a T-token answer); a micro-batch of B > 1 squares the "
                     "gradient of the mean over its examples of that sum; examples with no answer token within the "
                     "run's max_length are skipped and counted")


def diagonal_fisher(model, dataset, tokenizer, batch_size: int = 1, *, max_length: int,
                    samples: int = 0) -> dict[str, torch.Tensor]:
    """The diagonal empirical Fisher (``fisher_estimate``'s first value)."""
    return fisher_estimate(model, dataset, tokenizer, batch_size, max_length=max_length, samples=samples)[0]


def answer_log_likelihood(model, batch: dict) -> torch.Tensor:
    """Per example of a padded completion batch: sum over its answer tokens (labels != -100) of log p(token |
    everything before it)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    logp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def fisher_estimate(model, dataset, tokenizer, batch_size: int = 1, *, max_length: int,
                    samples: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """(Fisher, counts). Fisher: per trainable parameter, F = (1/M) sum_m g_m^2 over the M (micro-)batches, g_m the
    gradient of the mean over the micro-batch's examples of the answer's log-likelihood sum_t log p(y_t | x, y_<t)
    (one example per micro-batch by default: the per-example empirical Fisher of Kirkpatrick et al. 2017).
    ``max_length`` is the run's training length (the tokens the model was trained on): an example whose answer lies
    wholly beyond it keeps no answer token and is skipped, never counted in M. Counts: {"examples": offered,
    "skipped_no_answer_token": skipped, "used": examples in the mean, "max_length": max_length}.

    Data-parallel: each process takes every N-th micro-batch and the squared-gradient sums are added up across the
    processes (all-reduce), then divided by the total number of micro-batches: the mean over all of them."""
    params = trainable_parameters(model)
    if samples:
        dataset = dataset.select(range(min(samples, len(dataset))))
    encoded = tokenize_completions(dataset, tokenizer, max_length)  # drops examples with no answer token left
    counts = {"examples": len(dataset), "skipped_no_answer_token": len(dataset) - len(encoded), "used": len(encoded),
              "max_length": max_length}
    collate = CompletionCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    was_training = model.training
    model.eval()  # no dropout: the Fisher of the model as it is
    starts = list(range(0, len(encoded), batch_size))
    try:
        for start in distributed.shard(starts):
            batch = collate([encoded[i] for i in range(start, min(start + batch_size, len(encoded)))])
            model.zero_grad(set_to_none=True)
            answer_log_likelihood(model, {k: v.to(device) for k, v in batch.items()}).mean().backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach().float() ** 2
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    distributed.all_reduce_sum(fisher)
    return {n: f / max(len(starts), 1) for n, f in fisher.items()}, counts


@torch.no_grad()
def penalty_gradient_(model, fisher: dict, anchor: dict, lam: float, scratch: dict | None = None) -> float:
    """Add lam * F * (theta - anchor) to every trainable parameter's gradient and return (lam / 2) * sum of
    F * (theta - anchor)^2: the autograd penalty's value and gradient, in a few elementwise passes per tensor and no
    graph. ``scratch`` keeps two work buffers (the largest tensor's size, per device) between calls: allocating them
    afresh every step costs page faults on a CPU. Under data parallelism the gradients are already all-reduced here
    and every process adds the same term."""
    total = 0.0
    scratch = {} if scratch is None else scratch
    model = extract_model_from_parallel(model)  # the trainer passes the DDP wrapper: names without "module."
    for n, p in model.named_parameters():
        if n in fisher and p.requires_grad:
            d, fd = _work(scratch, p)
            torch.sub(p.detach(), anchor[n], out=d)
            torch.mul(d, fisher[n], out=fd)
            total += float(torch.dot(fd.view(-1), d.view(-1)))
            if p.grad is None:
                p.grad = fd.mul(lam)
            else:
                p.grad.add_(fd, alpha=lam)
    return lam / 2 * total


def _work(scratch: dict, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    key = (p.device, p.dtype)
    if key not in scratch or scratch[key][0].numel() < p.numel():
        scratch[key] = (torch.empty(p.numel(), device=p.device, dtype=p.dtype),
                        torch.empty(p.numel(), device=p.device, dtype=p.dtype))
    return tuple(b[:p.numel()].view_as(p) for b in scratch[key])


class EWC(Strategy):
    name = "ewc"
    Config = EWCOptions
    packing_safe = True

    def __init__(self, config=None):
        super().__init__(config)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.general_fisher: dict[str, torch.Tensor] = {}
        self.general_anchor: dict[str, torch.Tensor] = {}
        self.scratch: dict = {}  # work buffers of the closed-form gradient (not state: rebuilt on demand)
        self.fisher_log: list[dict] = []  # per Fisher estimate: examples offered, skipped (no answer token), used

    def before_stage(self, model, ctx):
        if self.config.general and not self.general_fisher and ctx.index == 0:
            from continual.probes.general_text import general_examples
            data = general_examples(ctx.general_source, self.config.general_samples, seed=ctx.seed)
            self.general_fisher, counts = fisher_estimate(model, data, ctx.tokenizer, self.config.fisher_batch_size,
                                                          max_length=ctx.max_length)
            self._record("general text (original model)", counts, ctx)
            self.general_anchor = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}

    def after_stage(self, model, ctx):
        if ctx.last:  # no later stage is penalised with this Fisher (one of a 3-stage run's three): not estimated
            return
        task_fisher, counts = fisher_estimate(model, ctx.task.train, ctx.tokenizer, self.config.fisher_batch_size,
                                              max_length=ctx.max_length, samples=self.config.fisher_samples)
        self._record(ctx.task.name, counts, ctx)
        for n, f in task_fisher.items():
            self.fisher[n] = self.config.gamma * self.fisher[n] + f if n in self.fisher else f
        self.anchor = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}

    def _record(self, data: str, counts: dict, ctx) -> None:
        """Keep (state) and write (RUN/strategy/ewc_fisher.csv) what each Fisher was estimated from: examples
        offered, skipped for having no answer token within max_length, used in the mean, and the convention."""
        if counts["skipped_no_answer_token"]:
            log.warning("EWC Fisher on %s: %d of %d examples skipped (no answer token within max_length %d)", data,
                        counts["skipped_no_answer_token"], counts["examples"], counts["max_length"])
        self.fisher_log.append({"stage": ctx.index, "data": data, **counts, "convention": FISHER_CONVENTION})
        if ctx.save is not None:
            import pandas as pd
            ctx.save("ewc_fisher.csv", pd.DataFrame(self.fisher_log))

    def penalty(self, model, fisher, anchor) -> torch.Tensor:
        """The penalty's sum through autograd: the definition (tests compare the closed form with it)."""
        total = None
        model = extract_model_from_parallel(model)  # the trainer passes the DDP wrapper: names without "module."
        for n, p in model.named_parameters():
            if n in fisher and p.requires_grad:
                term = (fisher[n] * (p - anchor[n]) ** 2).sum()
                total = term if total is None else total + term
        return total if total is not None else torch.zeros(())

    def after_backward(self, model, inputs, step):
        """The penalty's gradient added in closed form, lambda * F * (theta - anchor), with no autograd graph over
        the parameters; its value (lambda / 2) * sum F (theta - anchor)^2 is logged and counted in the loss."""
        terms = {}
        if self.fisher:
            terms["ewc_penalty"] = penalty_gradient_(model, self.fisher, self.anchor, self.config.lam, self.scratch)
        if self.general_fisher:
            terms["ewc_general_penalty"] = penalty_gradient_(model, self.general_fisher, self.general_anchor,
                                                             self.config.general_lambda, self.scratch)
        return terms

    def state_dict(self):
        return {"fisher": self.fisher, "anchor": self.anchor, "general_fisher": self.general_fisher,
                "general_anchor": self.general_anchor, "fisher_log": self.fisher_log}

    def load_state_dict(self, state, model):
        for key, value in state.items():
            setattr(self, key, value)
