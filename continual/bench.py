"""``continual bench``: throughput of evaluation and training, measured side by side against plain baselines.

One command, three sections, every figure taken in the same run on the same machine:

1. evaluation examples/s on the same eval examples of the stream's first task:
     toolkit      ``score_candidates`` (batched log-prob scoring)
     seeds' way   per-example ``model.generate`` (5 beams, 10 new tokens, no repeated bigrams), first word of the
                  continuation compared with the label word, as the seed notebook did
     one-by-one   one unpadded forward pass per (example, candidate)
   The two slow baselines run on a small sample (``--slow-examples``). A second line compares the shared-prefix
   (KV cache) path with the row-per-candidate path on the retention probe's cloze items (four multi-token answers).
2. training tokens/s per strategy through the real stage trainer (``training.train_stage``: HF Trainer, strategy
   hooks, planned batches) against a plain PyTorch loop on the same model, batches, precision and AdamW (fused on
   CUDA), counting all tokens of the batch tensors and only the non-padding ones. A strategy's state needs a stage
   behind it (EWC's Fisher, replay's buffer, distill's teacher), so each strategy trains ``--prep-steps`` on the
   first task, then the second task is timed: ``--warmup`` steps, then ``--steps`` measured steps (median).
   Each strategy runs in its own subprocess, which also gives its peak memory: torch.cuda.max_memory_allocated on a
   GPU; on CPU the peak resident set size sampled every 5 ms while training, and its growth over the loaded model.
3. end-to-end wall time of one stream under every strategy on the ``tiny`` model (``continual.run``).

Nothing here asserts a speed: the numbers are printed, and written as JSON and Markdown when asked.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from continual.errors import ContinualError
from continual.options import Options, option

TRAIN_STRATEGIES = ("naive", "lora", "ewc", "replay", "distill", "dpo", "o-lora", "agem", "generative-replay", "merge",
                    "lora-merge", "osf")
# bounded state building so the harness stays quick; these affect only the preparation stage, not the timed steps
PREP_OPTIONS = {"ewc": {"ewc.fisher_samples": 16}, "generative-replay": {"generative-replay.samples": 8}}


SECTIONS = ("evaluation", "training", "end_to_end")


@dataclasses.dataclass
class BenchConfig(Options):
    """``continual bench``'s options (the same mechanism as ``continual run``'s: continual.options)."""
    model: str = option("smollm2-135m", "model alias or folder")
    stream: str = option("facts", "stream whose first two tasks are used")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    strategies: str = option(",".join(TRAIN_STRATEGIES), "strategies to time, comma-separated")
    batch_size: int = option(8, "training examples per step", low=1)
    steps: int = option(5, "measured training steps per strategy", low=1)
    warmup: int = option(2, "untimed training steps before them", low=0)
    prep_steps: int = option(2, "steps on the first task that give each strategy its state", low=0)
    packing: bool = option(False, "train on padding-free packed batches")
    precision: str = option("auto", "training precision", choices=("auto", "fp32", "bf16"))
    eval_examples: int = option(0, "examples for the toolkit scorer (0 = every eval example of task 1)", low=0)
    slow_examples: int = option(8, "examples for the two slow evaluation baselines", low=1)
    e2e: bool = option(True, "end-to-end run of every strategy on the tiny model")
    e2e_steps: int = option(20, "steps per stage in the end-to-end run", low=1)
    seed: int = option(0, "seed of the model, data and training")
    only: str = option("", "comma-separated sections: evaluation, training, end_to_end", shown_default="all")
    json: str = option("", "also write the report as JSON to this file", metavar="FILE")
    markdown: str = option("", "also write the report as a Markdown table to this file", metavar="FILE")

    def check(self):
        unknown = set(self.sections()) - set(SECTIONS)
        if unknown:
            raise ContinualError(f"--only names unknown section(s) {', '.join(sorted(unknown))}; choose from "
                                 f"{', '.join(SECTIONS)}")

    def sections(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.only.split(",") if s.strip()) or SECTIONS


# ------------------------------------------------------------------------------------------------- evaluation

def seeds_generate_accuracy(model, tokenizer, prompts, label_words) -> tuple[int, int]:
    """The seed notebook's evaluation: 5-beam generation, first word of the continuation vs the label word."""
    import torch
    device = next(model.parameters()).device
    correct = 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        for prompt, word in zip(prompts, label_words):
            encoded = tokenizer([prompt], return_tensors="pt").to(device)
            out = model.generate(**encoded, pad_token_id=pad, max_new_tokens=10, num_beams=5,
                                 no_repeat_ngram_size=2, num_return_sequences=1, do_sample=False)
            text = tokenizer.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
            first = (text.split() or [""])[0].strip(".,;:!?")
            correct += first == word
    return correct, len(prompts)


def one_by_one_predictions(model, tokenizer, prompts, candidates) -> list[int]:
    """One unpadded forward per (example, candidate): the scorer's definition without batching or sharing."""
    import torch

    from continual.scoring import split_continuation
    device = next(model.parameters()).device
    predictions = []
    with torch.inference_mode():
        for prompt, cands in zip(prompts, candidates):
            scores = []
            for cand in cands:
                ctx, cont = split_continuation(tokenizer, prompt, cand)
                ids = torch.tensor([ctx + cont], device=device)
                logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
                scores.append(sum(float(logp[len(ctx) + i - 1, t]) for i, t in enumerate(cont)))
            predictions.append(max(range(len(scores)), key=scores.__getitem__))
    return predictions


class TokenCounter:
    """A model stand-in that counts the input tokens of every forward pass and passes the call on."""

    def __init__(self, model):
        self.model, self.tokens = model, 0

    def __call__(self, **kwargs):
        self.tokens += kwargs["input_ids"].numel()
        return self.model(**kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def _timed(fn, *args, device="cpu", **kwargs):
    """(result, wall seconds, process CPU seconds of all its threads). On a CPU shared with a few other jobs the CPU
    seconds move less with their load than the wall clock; on an oversubscribed one, threads that spin while they
    wait for a core inflate them too."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    _sync(device)
    return out, time.perf_counter() - w0, time.process_time() - c0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def bench_evaluation(cfg: BenchConfig, device: str) -> dict:
    import numpy as np

    from continual.config import RunConfig
    from continual.models import load_model
    from continual.probes.cloze import load_cloze_items
    from continual.runner import stream_for
    from continual.scoring import score_candidates

    loaded = load_model(cfg.model, seed=cfg.seed)
    model, tok = loaded.model.to(device).eval(), loaded.tokenizer
    task = stream_for(RunConfig(stream=cfg.stream, seed=cfg.seed)).tasks[0]
    prompts = [p for ds in task.eval.values() for p in ds["prompt"]]
    candidates = [c for ds in task.eval.values() for c in ds["candidates"]]
    labels = [y for ds in task.eval.values() for y in ds["label"]]
    if cfg.eval_examples:
        prompts, candidates, labels = prompts[:cfg.eval_examples], candidates[:cfg.eval_examples], labels[
            :cfg.eval_examples]
    n_slow = min(cfg.slow_examples, len(prompts))

    score_candidates(model, tok, prompts[:8], candidates[:8])  # warm-up: allocator, kernels
    scores, t_toolkit, c_toolkit = _timed(score_candidates, model, tok, prompts, candidates, device=device)
    words = [c[y].strip().split()[0].strip(".,;:!?") for c, y in zip(candidates[:n_slow], labels[:n_slow])]
    (seed_correct, _), t_seeds, c_seeds = _timed(seeds_generate_accuracy, model, tok, prompts[:n_slow], words,
                                                 device=device)
    one, t_one, c_one = _timed(one_by_one_predictions, model, tok, prompts[:n_slow], candidates[:n_slow],
                               device=device)
    agree = int((scores.predictions()[:n_slow] == np.array(one)).sum())

    items = load_cloze_items()  # as the retention probe scores them: the answer and three distractors
    cloze_prompts = [it["prompt"] for it in items]
    cloze_candidates = [[" " + it["answer"]] + [" " + d for d in it["distractors"]] for it in items]
    # the input tokens each path feeds the model are the work, whatever the machine's load
    counted = {False: TokenCounter(model), True: TokenCounter(model)}
    rows, t_rows, c_rows = _timed(score_candidates, counted[False], tok, cloze_prompts, cloze_candidates,
                                  share_prompt=False, device=device)
    shared, t_shared, c_shared = _timed(score_candidates, counted[True], tok, cloze_prompts, cloze_candidates,
                                        share_prompt=True, device=device)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(rows.logprob, shared.logprob))
    toolkit_rate = len(prompts) / t_toolkit
    toolkit_cpu_rate = len(prompts) / c_toolkit
    return {
        "examples": len(prompts), "slow_examples": n_slow,
        "toolkit_ex_per_s": toolkit_rate, "toolkit_accuracy": scores.accuracy(labels),
        "seeds_ex_per_s": n_slow / t_seeds, "seeds_accuracy": seed_correct / n_slow,
        "one_by_one_ex_per_s": n_slow / t_one, "one_by_one_agrees_with_toolkit": f"{agree}/{n_slow}",
        "speedup_vs_seeds": toolkit_rate / (n_slow / t_seeds),
        "speedup_vs_one_by_one": toolkit_rate / (n_slow / t_one),
        "toolkit_ex_per_cpu_s": toolkit_cpu_rate, "seeds_ex_per_cpu_s": n_slow / c_seeds,
        "one_by_one_ex_per_cpu_s": n_slow / c_one,
        "speedup_vs_seeds_cpu": toolkit_cpu_rate / (n_slow / c_seeds),
        "speedup_vs_one_by_one_cpu": toolkit_cpu_rate / (n_slow / c_one),
        "cloze_shared_prefix_speedup_cpu": c_rows / c_shared,
        "cloze_rows_input_tokens": counted[False].tokens,
        "cloze_shared_prefix_input_tokens": counted[True].tokens,
        "cloze_items": len(items),
        "cloze_rows_ex_per_s": len(items) / t_rows, "cloze_shared_prefix_ex_per_s": len(items) / t_shared,
        "cloze_shared_prefix_speedup": t_rows / t_shared, "cloze_shared_prefix_max_abs_diff": diff,
    }


# --------------------------------------------------------------------------------------------------- training

class PeakMemory:
    """Peak memory over a block: CUDA allocator peak, or on CPU the resident set size sampled every 5 ms."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device.startswith("cuda"):
            import torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak = _rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())

    @property
    def kind(self) -> str:
        return ("torch.cuda.max_memory_allocated" if self.device.startswith("cuda") else
                "peak RSS sampled every 5 ms (growth over the loaded model)")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def batch_tokens(batch: dict) -> tuple[int, int]:
    """(all tokens of the batch's input_ids tensors, those the attention mask keeps; packed batches have no pad)."""
    import torch
    total = real = 0
    for key, value in batch.items():
        if key.endswith("input_ids") and isinstance(value, torch.Tensor):
            total += value.numel()
            mask = batch.get(key.replace("input_ids", "attention_mask"))
            real += int(mask.sum()) if isinstance(mask, torch.Tensor) else value.numel()
    return total, real


def _step_clock():
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """Times every optimizer step (end to end, data loading included) and keeps the data loader to count the
        tokens of each step's batch afterwards."""

        def __init__(self, device):
            self.device, self.ends, self.loader = device, [], None

        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            self.loader = train_dataloader
            self.ends = [(time.perf_counter(), time.process_time())]

        def on_step_end(self, args, state, control, **kwargs):
            _sync(self.device)
            self.ends.append((time.perf_counter(), time.process_time()))

        def step_tokens(self, steps: int, batch_size: int) -> list[tuple[int, int]]:
            data, collate = self.loader.dataset, self.loader.collate_fn
            return [batch_tokens(collate([data[i] for i in range(k * batch_size, (k + 1) * batch_size)]))
                    for k in range(steps)]

    return StepClock


def train_worker(spec: dict) -> dict:
    """One strategy (or the plain loop) in this process: prep stage, then the timed stage; returns the figures."""
    import torch

    import continual  # noqa: F401  (package import order: strategies import continual)
    from continual.config import RunConfig
    from continual.models import load_model
    from continual.runner import resolve_device, stream_for
    from continual.training import train_stage
    from strategies import StageContext, make_strategy

    device = resolve_device(spec["device"])
    name = spec["strategy"]
    torch.manual_seed(spec["seed"])
    loaded = load_model(spec["model"], seed=spec["seed"])
    tok, model = loaded.tokenizer, loaded.model.to(device)
    config = RunConfig(model=spec["model"], stream=spec["stream"], seed=spec["seed"], batch_size=spec["batch_size"],
                       progress=False, packing=spec["packing"], precision=spec["precision"], device=device)
    stream = stream_for(config)
    timed_steps = spec["warmup"] + spec["steps"]
    with PeakMemory(device) as memory:
        if name == "plain":
            durations, tokens = plain_loop(model, tok, stream.tasks[1], config, timed_steps, device)
            hook_s = [0.0] * timed_steps
        else:
            strategy = make_strategy(name, PREP_OPTIONS.get(name))
            config = dataclasses.replace(config, strategy=name, lr=strategy.default_lr)
            model = strategy.setup(model)

            def ctx(i):
                return StageContext(index=i, task=stream.tasks[i], stream=stream, tokenizer=tok, device=device,
                                    seed=config.seed, batch_size=config.batch_size, general_source="offline",
                                    max_length=config.max_length)
            train_stage(model, strategy, ctx(0), config, spec["prep_steps"])
            clock = _step_clock()(device)
            hooks = HookClock(strategy, device)
            train_stage(model, strategy, ctx(1), config, timed_steps, callbacks=[clock])
            hook_s = hooks.per_step(timed_steps)
            durations = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(clock.ends, clock.ends[1:])]
            tokens = clock.step_tokens(timed_steps, config.batch_size)
    measured = slice(spec["warmup"], timed_steps)
    # medians resist a neighbour's burst on a shared machine
    step_s = statistics.median(wall for wall, _ in durations[measured])
    step_cpu_s = statistics.median(cpu for _, cpu in durations[measured])
    per_step = tokens[measured]
    total, real = (statistics.mean(t[k] for t in per_step) for k in (0, 1))
    return {"strategy": name, "step_s": step_s, "step_cpu_s": step_cpu_s, "tokens_per_s": total / step_s,
            "nonpad_tokens_per_s": real / step_s, "tokens_per_cpu_s": total / step_cpu_s,
            "tokens_per_step": total, "padding_share": 1 - real / total,
            "peak_memory_mb": memory.peak / 2**20, "memory_growth_mb": (memory.peak - memory.start) / 2**20,
            "memory_kind": memory.kind, "steps_measured": spec["steps"],
            "hook_s": statistics.median(hook_s[measured]) if hook_s[measured] else 0.0}


class HookClock:
    """Times the strategy's per-step hooks (loss_terms, after_backward, after_optimizer_step) inside the very steps
    the step clock times: the cost a strategy adds to a step, measured in the same process and steps, so that it can
    be set against naive's step without the variance between two subprocesses on a shared CPU."""

    def __init__(self, strategy, device: str):
        self.device, self.calls = device, []  # (hook, seconds)
        for hook in ("loss_terms", "after_backward", "after_optimizer_step"):
            original = getattr(strategy, hook)

            def timed(*args, _original=original, _hook=hook, **kwargs):
                _sync(self.device)
                start = time.perf_counter()
                out = _original(*args, **kwargs)
                _sync(self.device)
                self.calls.append((_hook, time.perf_counter() - start))
                return out
            setattr(strategy, hook, timed)

    def per_step(self, steps: int) -> list[float]:
        """Seconds of hooks per step, in step order (each hook runs once per step)."""
        per_hook: dict[str, list[float]] = {}
        for hook, seconds in self.calls:
            per_hook.setdefault(hook, []).append(seconds)
        totals = [0.0] * steps
        for seconds in per_hook.values():
            for i, value in enumerate(seconds[-steps:]):
                totals[i] += value
        return totals


def plain_loop(model, tokenizer, task, config, steps: int, device: str):
    """The reference: the naive strategy's batches for this stage, padded to each batch's longest example, in a
    bare forward / backward / clip / AdamW loop (fused on CUDA; bf16 autocast where the trainer would use it)."""
    import torch

    from continual.training import CompletionCollator, plan_batches, tokenize_completions
    encoded = tokenize_completions(task.train, tokenizer, config.max_length)
    collate = CompletionCollator(tokenizer.pad_token_id)
    plan = plan_batches(len(encoded), steps, config.batch_size, config.seed * 1000 + 1)
    on_cuda = device.startswith("cuda")
    bf16 = config.precision == "bf16" or (config.precision == "auto" and on_cuda and torch.cuda.is_bf16_supported())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=on_cuda)
    model.train()
    durations, tokens = [], []
    for batch_ids in plan:
        w0, c0 = time.perf_counter(), time.process_time()
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in batch_ids]).items()}
        with torch.autocast(device_type="cuda" if on_cuda else "cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.detach().item()  # the trainer logs every step's loss: the same host sync
        _sync(device)
        durations.append((time.perf_counter() - w0, time.process_time() - c0))
        tokens.append(batch_tokens(batch))
    return durations, tokens


def bench_training(cfg: BenchConfig, device: str, log, partial=None) -> list[dict]:
    """The plain loop, then each strategy, one subprocess each; ``partial(rows)`` after each row."""
    names = ["plain"] + [s.strip() for s in cfg.strategies.split(",") if s.strip()]
    rows = []
    for name in names:
        spec = {**dataclasses.asdict(cfg), "strategy": name, "device": device}
        log(f"  training: {name} ...")
        rows.append(_in_subprocess(spec))
        _training_ratios(rows)
        if partial:
            partial(rows)
    return rows


def _training_ratios(rows: list[dict]) -> None:
    plain = rows[0]
    naive = next((r for r in rows if r["strategy"] == "naive"), None)
    for r in rows:
        r["vs_plain_tokens"] = r["tokens_per_s"] / plain["tokens_per_s"]
        r["vs_plain_nonpad_tokens"] = r["nonpad_tokens_per_s"] / plain["nonpad_tokens_per_s"]
        r["vs_plain_tokens_cpu"] = r["tokens_per_cpu_s"] / plain["tokens_per_cpu_s"]
        r["step_vs_naive"] = r["step_s"] / naive["step_s"] if naive else None
        r["step_cpu_vs_naive"] = r["step_cpu_s"] / naive["step_cpu_s"] if naive else None
        # the hooks' own seconds set against naive's step of the same run: (naive step + hooks) / naive step
        r["hooks_vs_naive"] = (naive["step_s"] + r.get("hook_s", 0.0)) / naive["step_s"] if naive else None


def _in_subprocess(spec: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="continual-bench-") as scratch:
        out = Path(scratch) / "result.json"
        env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([sys.executable, "-m", "continual.bench", "--worker", json.dumps(spec), str(out)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ContinualError(f"benchmark worker for '{spec['strategy']}' failed: {tail[0]}")
        return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------- end to end

def bench_end_to_end(cfg: BenchConfig, device: str, log) -> dict:
    """Every built-in strategy over the whole stream on the tiny model, one after another (continual.run)."""
    from continual.runner import run
    from strategies import STRATEGIES
    names = STRATEGIES.names()
    with tempfile.TemporaryDirectory(prefix="continual-bench-e2e-") as out:
        log(f"  end to end: {len(names)} strategies on tiny, {cfg.e2e_steps} steps per stage ...")
        t0 = time.perf_counter()
        results = run(stream=cfg.stream, strategy=",".join(names), model="tiny", out=out, steps=cfg.e2e_steps,
                      batch_size=cfg.batch_size, seed=cfg.seed, progress=False, device=device, packing=cfg.packing)
        total = time.perf_counter() - t0
    per = {r.summary["strategy"]: r.summary["wall_time_s"] for r in results}
    return {"strategies": names, "steps_per_stage": cfg.e2e_steps, "total_s": total, "per_strategy_s": per}


# -------------------------------------------------------------------------------------------------- reporting

TARGETS = {
    "evaluation vs seeds' way": ">= 100x on CPU, >= 3,000x on an H100",
    "training dense tokens/s vs plain loop": ">= 1.5x on an H100",
    "non-padding tokens/s vs pad-to-longest loop (mixed-length streams)": ">= 2x",
    "EWC step / naive step": "<= 1.15",
    "distill step / naive step": "<= 1.6",
}


def environment(device: str) -> dict:
    import torch
    import transformers
    if device.startswith("cuda"):
        where = torch.cuda.get_device_name(torch.device(device))
    else:
        where = (f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads "
                 f"({platform.processor() or platform.machine()})")
    return {"device": device, "hardware": where, "torch": str(torch.__version__),
            "transformers": transformers.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def render_markdown(report: dict) -> str:
    env, cfg, ev = report["environment"], report["config"], report.get("evaluation")
    load = env.get("load_average")
    lines = [f"# continual bench: {cfg['model']} on {env['hardware']}", "",
             f"{env['date']}; torch {env['torch']}, transformers {env['transformers']}; device {env['device']}"
             + (f"; 1-min load average at start {load:.2f}" if load is not None else ""), "",
             f"command: `{report['command']}`", "",
             "Rates per wall-clock second, and per second of this process's CPU time (all its threads): on a CPU "
             "shared with other jobs the second moves much less with their load.", ""]
    if ev:
        lines += ["## Evaluation (same examples)", "",
                  "| method | examples | ex/s | ex/CPU-s | accuracy | toolkit speed-up (wall / CPU) |",
                  "|---|---|---|---|---|---|",
                  f"| toolkit `score_candidates` | {ev['examples']} | {ev['toolkit_ex_per_s']:.1f} | "
                  f"{ev['toolkit_ex_per_cpu_s']:.1f} | {ev['toolkit_accuracy']:.3f} | 1 |",
                  f"| seeds' way (5-beam generate, first word) | {ev['slow_examples']} | {ev['seeds_ex_per_s']:.2f} | "
                  f"{ev['seeds_ex_per_cpu_s']:.2f} | {ev['seeds_accuracy']:.3f} | {ev['speedup_vs_seeds']:.0f}x / "
                  f"{ev['speedup_vs_seeds_cpu']:.0f}x |",
                  f"| one forward per example and candidate | {ev['slow_examples']} | {ev['one_by_one_ex_per_s']:.2f} "
                  f"| {ev['one_by_one_ex_per_cpu_s']:.2f} | agrees {ev['one_by_one_agrees_with_toolkit']} | "
                  f"{ev['speedup_vs_one_by_one']:.1f}x / {ev['speedup_vs_one_by_one_cpu']:.1f}x |",
                  "",
                  f"Multi-token candidates (the {ev['cloze_items']} cloze items of the retention probe, 4 answers "
                  f"each): shared-prefix KV-cache path {ev['cloze_shared_prefix_ex_per_s']:.1f} ex/s vs "
                  f"row-per-candidate {ev['cloze_rows_ex_per_s']:.1f} ex/s = "
                  f"{ev['cloze_shared_prefix_speedup']:.2f}x wall, {ev['cloze_shared_prefix_speedup_cpu']:.2f}x CPU; "
                  f"input tokens {ev['cloze_shared_prefix_input_tokens']} vs {ev['cloze_rows_input_tokens']}; "
                  f"largest score difference {ev['cloze_shared_prefix_max_abs_diff']:.1e}.", ""]
    if report.get("training"):
        tr = report["training"]
        lines += [f"## Training (batch {cfg['batch_size']}, {cfg['stream']} stream, median of {cfg['steps']} steps "
                  f"after {cfg['warmup']} warm-up; packing {'on' if cfg['packing'] else 'off'})", "",
                  "| strategy | step s | step CPU-s | tokens/s | non-pad tokens/s | padding | vs plain (all, wall) "
                  "| vs plain (non-pad, wall) | vs plain (CPU) | step / naive (wall) | step / naive (CPU) "
                  "| hooks s | (naive + hooks) / naive | peak memory MB | growth MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in tr:
            naive = ("", "") if r["step_vs_naive"] is None else (f"{r['step_vs_naive']:.2f}",
                                                                 f"{r['step_cpu_vs_naive']:.2f}")
            lines.append(f"| {r['strategy']} | {r['step_s']:.3f} | {r['step_cpu_s']:.3f} | {r['tokens_per_s']:.0f} | "
                         f"{r['nonpad_tokens_per_s']:.0f} | {r['padding_share']:.0%} | {r['vs_plain_tokens']:.2f} | "
                         f"{r['vs_plain_nonpad_tokens']:.2f} | {r['vs_plain_tokens_cpu']:.2f} | {naive[0]} | "
                         f"{naive[1]} | {r.get('hook_s', 0):.3f} | "
                         f"{'' if r.get('hooks_vs_naive') is None else format(r['hooks_vs_naive'], '.2f')} | "
                         f"{r['peak_memory_mb']:.0f} | {r['memory_growth_mb']:.0f} |")
        lines += ["", f"Memory: {tr[0]['memory_kind']}, one subprocess per row. Hooks: the median seconds per step "
                  "spent in the strategy's loss_terms, after_backward and after_optimizer_step, timed inside the "
                  "measured steps; (naive + hooks) / naive sets them against naive's step of this run, free of the "
                  "variance between subprocesses (a strategy that also changes the batches, replay or generative "
                  "replay, costs more than its hooks).", ""]
    if report.get("end_to_end"):
        e = report["end_to_end"]
        per = ", ".join(f"{k} {v:.0f} s" for k, v in e["per_strategy_s"].items())
        lines += ["## End to end (tiny model)", "",
                  f"{len(e['strategies'])} strategies x the whole stream, {e['steps_per_stage']} steps per stage: "
                  f"{e['total_s']:.0f} s in all ({per}).", ""]
    lines += ["## Targets (issue #7)", ""] + [f"- {k}: {v}" for k, v in TARGETS.items()]
    return "\n".join(lines) + "\n"


def run_bench(cfg: BenchConfig, sections=("evaluation", "training", "end_to_end"), log=print,
              command: str = "", save=None) -> dict:
    """Run the sections in order; ``save(report)`` after each, so an interrupted run keeps what it measured."""
    from continual.runner import resolve_device
    device = resolve_device(cfg.device)
    report = {"command": command, "config": dataclasses.asdict(cfg), "environment": environment(device)}
    started = time.perf_counter()
    steps = {"evaluation": lambda: bench_evaluation(cfg, device),
             "training": lambda: bench_training(cfg, device, log, partial=lambda rows: save and save(
                 {**report, "training": rows})),
             "end_to_end": lambda: bench_end_to_end(cfg, device, log)}
    for name, measure in steps.items():
        if name not in sections or (name == "end_to_end" and not cfg.e2e):
            continue
        log(f"{name} ...")
        report[name] = measure()
        report["bench_wall_s"] = time.perf_counter() - started
        if save:
            save(report)
    return report


def main_bench(cfg: BenchConfig) -> int:
    import transformers

    from continual.results import write_atomic
    from strategies import make_strategy
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars would interleave with the report
    for name in cfg.strategies.split(","):
        make_strategy(name.strip())  # an unknown strategy fails before anything runs
    for path in (cfg.json, cfg.markdown):
        if path and not Path(path).resolve().parent.is_dir():
            raise ContinualError(f"cannot write {path}: its folder does not exist")
    command = "continual bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "continual bench"

    def save(report):
        if cfg.json:
            write_atomic(Path(cfg.json), json.dumps(report, indent=2) + "\n")
        if cfg.markdown:
            write_atomic(Path(cfg.markdown), render_markdown(report))

    report = run_bench(cfg, cfg.sections(), log=lambda m: print(m, file=sys.stderr, flush=True), command=command,
                       save=save)
    print(render_markdown(report))
    return 0


if __name__ == "__main__":  # the per-strategy worker: python -m continual.bench --worker SPEC OUT
    if sys.argv[1:2] == ["--worker"]:
        result = train_worker(json.loads(sys.argv[2]))
        Path(sys.argv[3]).write_text(json.dumps(result))
