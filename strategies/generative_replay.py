"""Generative replay (LAMOL, Sun et al. 2020; self-synthesised rehearsal, Huang et al. 2024): before each stage the
model itself writes pseudo-examples of the earlier tasks, which replace a share of every batch as replay's buffer
does. No earlier training example is kept: of each task only its format is (the cue that ends its prompts, e.g.
"\\nSentiment:", its candidate answers and the text after them, e.g. "."), and the first ``head_words`` words of
``seeds`` of its prompts, from which generation starts.

A pseudo-example of task j: a kept beginning, continued by the ``generator`` model (sampled at ``temperature``, up to
``max_new_tokens``, to the end of the line), then the task's cue; for a one-line prompt (facts: "A is B's") the
generated line is cut before the first candidate answer it contains. Its answer comes from the current model (the
model before the stage) when ``relabel`` is on: its best-scoring candidate for a choice task, its greedy reply for a
generation task; otherwise from the generating model's own line (the candidate it wrote, or its reply). Sampling
uses torch's generator seeded by (seed, stage, task): the same seed gives the same examples. Every stage's
pseudo-examples are written to RUN/strategy/generative_replay/stage<i>.csv.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from continual import distributed
from continual.generation import generate_greedy
from continual.options import Options, option
from continual.scoring import score_candidates
from strategies.base import Strategy
from strategies.distill import frozen_copy


@dataclass
class GenerativeReplayOptions(Options):
    ratio: float = option(0.25, "share of each batch replaced by pseudo-examples of earlier tasks", low=0, high=1)
    samples: int = option(32, "pseudo-examples generated per earlier task before each stage", low=1)
    seeds: int = option(16, "prompt beginnings kept per task to start generation from", low=1)
    head_words: int = option(3, "words of a training prompt's first line kept as such a beginning", low=1)
    max_new_tokens: int = option(32, "tokens generated per pseudo-input at most", low=1)
    temperature: float = option(1.0, "sampling temperature of the pseudo-inputs", low=0, low_open=True)
    generator: str = option("current", "the model that writes the pseudo-inputs: current (before the stage) or base "
                            "(the original model)", choices=("current", "base"))
    relabel: bool = option(True, "answer every pseudo-input with the current model; off: the generator's own answer")


@dataclass
class TaskSketch:
    """What generative replay keeps of a task: its format and prompt beginnings, never an example."""
    name: str
    kind: str
    cue: str  # the prompts' last line, from its newline on ("" for one-line prompts)
    answers: list[str] = field(default_factory=list)  # choice tasks' candidates
    suffix: str = ""  # what training completions hold after the candidate (facts: ".")
    heads: list[str] = field(default_factory=list)


def sketch(task, seeds: int, head_words: int, seed: int) -> TaskSketch:
    prompts = task.train["prompt"]
    first = prompts[0]
    cue = first[first.rfind("\n"):] if "\n" in first else ""
    suffix = ""
    if task.answers:
        completion = task.train["completion"][0]
        chosen = max((a for a in task.answers if completion.startswith(a)), key=len, default="")
        suffix = completion[len(chosen):]
    rng = random.Random(f"generative-replay:{seed}:{task.name}")
    heads = []
    for prompt in rng.sample(list(prompts), min(seeds, len(prompts))):
        words = prompt.split("\n")[0].split(" ")
        keep = min(head_words, len(words) - 1)  # never the whole line
        if keep > 0:
            heads.append(" ".join(words[:keep]))
    return TaskSketch(task.name, task.kind, cue, list(task.answers), suffix, sorted(set(heads)) or [""])


def cut_before_answer(line: str, answers: list[str]) -> tuple[str, str | None]:
    """A one-line prompt ends before the first candidate answer the generated line holds: (prompt, that answer)."""
    found = [(line.find(a), a) for a in answers if a and line.find(a) > 0]
    if not found:
        return line, None
    at, answer = min(found)
    return line[:at], answer


class GenerativeReplay(Strategy):
    name = "generative-replay"
    Config = GenerativeReplayOptions
    packing_safe = True  # it replaces whole examples before collation

    def __init__(self, config=None):
        super().__init__(config)
        self.sketches: list[TaskSketch] = []
        self.pseudo: list[dict] = []
        self.base = None

    def setup(self, model):
        if self.config.generator == "base":
            self.base = frozen_copy(model)
        return model

    def before_stage(self, model, ctx):
        self.pseudo = []
        if self.sketches:
            made = self.generate(model, ctx) if distributed.is_main() else None
            self.pseudo = distributed.from_main(made)  # data-parallel: one draw, the main process's
            if ctx.save is not None:
                ctx.save(f"generative_replay/stage{ctx.index}.csv", pd.DataFrame(
                    self.pseudo, columns=["task", "prompt", "completion"]))

    def generate(self, model, ctx) -> list[dict]:
        c, tok = self.config, ctx.tokenizer
        writer = self.base.to(next(model.parameters()).device) if self.base is not None else model
        made = []
        for j, task in enumerate(self.sketches):
            heads = [task.heads[k % len(task.heads)] for k in range(c.samples)]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(hash_seed(ctx.seed, ctx.index, j))
                lines = generate_greedy(writer, tok, heads, c.max_new_tokens, batch_size=32,
                                        temperature=c.temperature)
            prompts, own = [], []
            for head, line in zip(heads, lines):
                text = (head + " " + line).strip() if line else head
                if task.cue:
                    prompts.append(text + task.cue)
                    own.append(None)
                else:
                    prompt, answer = cut_before_answer(text, task.answers)
                    prompts.append(prompt.rstrip())
                    own.append(answer)
            keep = [i for i, p in enumerate(prompts) if p.strip() and p.strip() != task.cue.strip()]
            prompts, own = [prompts[i] for i in keep], [own[i] for i in keep]
            if not prompts:
                continue
            if task.kind == "choice":
                best = score_candidates(model, tok, prompts, [task.answers] * len(prompts)).predictions()
                answers = [a if a is not None and not c.relabel else task.answers[k] for a, k in zip(own, best)]
                completions = [a + task.suffix for a in answers]
            else:
                replier = model if c.relabel else writer
                replies = generate_greedy(replier, tok, prompts, 48, batch_size=32)
                completions = [f" {r}\n" if r else "" for r in replies]
            made += [{"task": task.name, "prompt": p, "completion": comp}
                     for p, comp in zip(prompts, completions) if comp.strip()]
        return made

    def mix_batches(self, batches, ctx):
        if not self.pseudo:
            return batches
        rng = random.Random(f"generative-replay-mix:{ctx.seed}:{ctx.index}")
        k = round(self.config.ratio * ctx.batch_size)
        return [batch[:len(batch) - k] + [rng.choice(self.pseudo) for _ in range(k)] for batch in batches]

    def after_stage(self, model, ctx):
        self.sketches.append(sketch(ctx.task, self.config.seeds, self.config.head_words, ctx.seed))
        if self.base is not None:
            self.base.to("cpu")  # kept off the accelerator between stages

    def state_dict(self):
        return {"sketches": [asdict(s) for s in self.sketches]}

    def load_state_dict(self, state, model):
        self.sketches = [TaskSketch(**s) for s in state["sketches"]]


def hash_seed(seed: int, stage: int, task: int) -> int:
    return (seed * 1_000_003 + stage * 1_009 + task) % (2 ** 31)
