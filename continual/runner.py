"""The stage loop: for each task, train it, score every task, run the retention probe, write results.

    base model -> probe calibration + scores (row "base")
    for each stage i (task i): strategy.before_stage -> train -> strategy.after_stage -> scores -> probe -> files
    -> metrics -> summary.json

Each finished stage also leaves a checkpoint (model + strategy state); re-running the same command resumes after
the last finished stage. Stage i trains with seed (seed, i), so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, concatenate_datasets
from safetensors.torch import load_model as load_model_weights
from safetensors.torch import save_model
from transformers import TrainingArguments
from tqdm.auto import tqdm

from continual import distributed
from continual.config import RunConfig
from continual.errors import ContinualError
from continual.evaluation import evaluate_stream
from continual.metrics import CONVENTIONS, summarise
from continual.models import load_model, parameter_counts
from continual.predictions import predict_stream
from continual.probes.general_text import general_text
from continual.probes.retention import ProbeSettings, RetentionProbe
from continual.results import RunDir, matrix_frame
from continual.streams import Stream, Task, get_stream
from continual.streams.build import fit_to_length
from continual.training import (LossRecorder, StageTrainer, dpo_trainer_class, plan_batches, quiet_logs,
                                stage_collator, tokenize_completions, training_arguments)
from strategies import StageContext, make_strategy


@dataclass
class RunResult:
    path: Path
    matrix: pd.DataFrame  # rows: base then stages; columns: tasks
    scores: pd.DataFrame
    probe: pd.DataFrame
    losses: pd.DataFrame
    summary: dict

    def split_matrix(self, split: str) -> pd.DataFrame:
        rows = list(self.matrix.index)
        return matrix_frame(self.scores, split, rows, list(self.matrix.columns))


def run(config: RunConfig | None = None, **overrides) -> RunResult | list[RunResult]:
    """Run one strategy (a RunResult) or several comma-separated ones into OUT/<strategy>/ (a list).

    A strategy may be a '+' combination (lora+replay); ``strategy_options`` keys are 'strategy.option' and go to
    every run whose strategy has that part.
    """
    config = dataclasses.replace(config or RunConfig(), **overrides)
    specs = [s.strip() for s in config.strategy.split(",")]
    if len(set(specs)) != len(specs) or "" in specs:
        raise ContinualError(f"--strategy lists '{config.strategy}': name each strategy once, comma-separated")
    part_names = {spec: [p.name for p in built.parts]
                  for spec, built in ((spec, make_strategy(spec)) for spec in specs)}
    stray = [k for k in config.strategy_options
             if not any(k.partition(".")[0] in names for names in part_names.values())]
    if stray:
        raise ContinualError(f"strategy option(s) {', '.join(stray)} name no strategy of '{config.strategy}'; write "
                             "<strategy>.<option>=<value>, e.g. replay.ratio=0.5")
    configs = [dataclasses.replace(config, strategy=spec, out=config.out if len(specs) == 1 else
                                   os.path.join(config.out, spec),
                                   strategy_options={k: v for k, v in config.strategy_options.items()
                                                     if k.partition(".")[0] in part_names[spec]})
               for spec in specs]
    for c in configs:
        make_strategy(c.strategy, c.strategy_options)  # every option checked before the first run starts
    results = [run_one(c) for c in configs]
    return results[0] if len(specs) == 1 else results


def check_data_parallel(config: RunConfig) -> None:
    """Data-parallel runs keep the single-process global batch: each of N processes takes batch_size / N."""
    n = distributed.world_size()
    if n > 1 and config.batch_size % n:
        raise ContinualError(f"batch_size {config.batch_size} does not split over {n} processes; use a multiple of "
                             f"{n} (each process takes batch_size / {n} examples of every step)")
    sharded = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" or (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
        and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")
    if sharded:  # scoring runs different forward passes on each process: sharded weights would need them in lockstep
        raise ContinualError("FSDP and DeepSpeed ZeRO-3 shard the weights, but the runner scores the in-memory model "
                             "between stages on each process; launch with DDP (accelerate launch --multi_gpu) or "
                             "DeepSpeed ZeRO-1/2, and fit a large model with LoRA (docs/scaling.md)")
    if n > 1 and config.device.startswith("cuda:"):
        raise ContinualError(f"device '{config.device}' names one GPU, but {n} processes were launched; use "
                             "--device auto or cuda (each process takes its own GPU)")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ContinualError(f"device '{device}' was asked for but torch sees no CUDA GPU; use --device cpu")
    return device


def stream_for(config: RunConfig) -> Stream:
    """The stream of a config: built from its source, tasks picked by --tasks, then ordered by --order."""
    options = {"camp_size": config.camp_size} if config.stream in ("facts", "mixed") else {}
    stream = get_stream(config.stream, seed=config.seed, source=config.source, **options)
    by_name = {t.name: t for t in stream.tasks}
    if config.tasks:
        names = [t.strip() for t in config.tasks.split(",")]
        unknown = [n for n in names if n not in by_name]
        if unknown or len(set(names)) != len(names):
            raise ContinualError(f"--tasks '{config.tasks}' must name distinct tasks of stream '{stream.name}': "
                                 f"{', '.join(by_name)}")
        stream.tasks = [by_name[n] for n in names]
    stream.tasks = ordered(stream.tasks, config.order, config.seed)
    return stream


def ordered(tasks: list[Task], order: str, seed: int) -> list[Task]:
    """given (as listed), reversed, random (shuffled by the seed) or an explicit comma-separated list of every
    task. The order changes results (which task is forgotten), so it is part of the run's identity."""
    if order == "given":
        return list(tasks)
    if order == "reversed":
        return tasks[::-1]
    if order == "random":
        shuffled = list(tasks)
        random.Random(f"order:{seed}").shuffle(shuffled)
        return shuffled
    names = [n.strip() for n in order.split(",")]
    by_name = {t.name: t for t in tasks}
    if sorted(names) != sorted(by_name):
        raise ContinualError(f"--order '{order}' must be given, reversed, random or a comma-separated list of "
                             f"exactly these tasks: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def format_stream(stream: Stream, tokenizer, chat: bool) -> Stream:
    """Plain prompts by default; with ``chat`` every task prompt becomes a user turn and the answer the reply."""
    if not chat:
        return stream
    if not getattr(tokenizer, "chat_template", None):
        raise ContinualError("this model's tokenizer has no chat template; drop --chat-template")

    def wrap(prompt):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    for task in stream.tasks:
        task.train = task.train.map(lambda r: {"prompt": wrap(r["prompt"]), "completion": r["completion"].lstrip()})
        if task.kind == "generation":
            task.eval = {k: ds.map(lambda r: {"prompt": wrap(r["prompt"])}) for k, ds in task.eval.items()}
            continue
        task.eval = {k: ds.map(lambda r: {"prompt": wrap(r["prompt"]),
                                          "candidates": [c.lstrip() for c in r["candidates"]]})
                     for k, ds in task.eval.items()}
        task.classes = [c.lstrip() for c in task.classes]
    return stream


def versions() -> dict:
    import datasets
    import peft
    import transformers
    return {"python": platform.python_version(), "torch": str(torch.__version__), "transformers": transformers.__version__,
            "datasets": datasets.__version__, "peft": peft.__version__, "numpy": np.__version__,
            "pandas": pd.__version__}


def peak_memory_mb(device: str) -> tuple[float, str]:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS (ru_maxrss)"


def run_one(config: RunConfig) -> RunResult:
    import datasets
    import transformers
    datasets.disable_progress_bars()  # library-internal bars (map, weight loading, shard writing) are noise here;
    transformers.utils.logging.disable_progress_bar()  # ours are stages, training steps and evaluation
    started = time.time()
    distributed.init()  # under accelerate launch / torchrun: join the process group (one process: nothing)
    check_data_parallel(config)
    if not distributed.is_main():
        config = dataclasses.replace(config, progress=False)  # one set of progress bars (progress is not hashed)
    device = resolve_device(config.device)
    if config.precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ContinualError("this GPU has no bf16 support; use --precision fp32 (or auto)")
    strategy = make_strategy(config.strategy, config.strategy_options)
    parts = {p.name: p for p in strategy.parts}
    typed = {k: getattr(parts[k.partition(".")[0]].config, k.partition(".")[2]) for k in config.strategy_options}
    # typed options ("0.5" from the command line is 0.5 from YAML) and the resolved learning rate: same run, same hash
    config = dataclasses.replace(config, device=device, strategy_options=typed,
                                 lr=config.lr if config.lr is not None else strategy.default_lr)
    stream = stream_for(config)
    run_dir = RunDir(config.out, config.identity(), config.config_hash())
    run_dir.check(config.fresh)  # refuse a foreign directory before the (slow) model load
    loaded = load_model(config.model, seed=config.seed)
    tokenizer, model = loaded.tokenizer, loaded.model.to(distributed.local_device(device))
    stream = fit_to_length(format_stream(stream, tokenizer, config.chat_template), tokenizer, config.max_length)

    stages = stage_plan(stream, strategy, config)
    names = [st.name for st in stages]

    run_dir.open(config.fresh)
    try:
        summary = run_dir.read_summary()
        if summary and summary.get("status") == "completed" and summary.get("config_hash") == run_dir.hash:
            return load_result(run_dir.path)
        run_dir.write_yaml("config.yaml", {
            "config_hash": run_dir.hash, "config": dataclasses.asdict(config),
            "resolved": {"model_source": loaded.source, "device": device, "stream": stream.name,
                         "scenario": stream.scenario, "stream_options": stream.options,
                         "tasks": {t.name: t.description for t in stream.tasks},
                         "prompts": "chat template" if config.chat_template else "plain",
                         "probe_text": config.probe_text, "probe_model": strategy.probe_model_note(),
                         "processes": distributed.world_size(),
                         "strategy": strategy.describe()},
            "versions": versions()})

        probe = RetentionProbe(tokenizer, general_text(config.probe_text, "probe"),
                               settings=ProbeSettings(text_tokens=config.probe_tokens, kl_tokens=config.kl_tokens,
                                                      batch_size=config.eval_batch_size))
        base_probe = probe.calibrate(model)  # the base model's log-probs are kept for the KL
        # set-up draws from the global RNG (LoRA's initial A matrices): seeded here, it does not depend on what ran
        # before in this process (an earlier strategy of --strategy a,b; the launcher's process-group start-up)
        torch.manual_seed(config.seed)
        model = strategy.setup(model)
        trainable, total = parameter_counts(model)

        done = _resume_point(run_dir)
        if done >= 0:
            model = _load_checkpoint(run_dir, model, strategy)
            # rows of a stage after the checkpoint (written before a crash) are dropped: that stage runs again
            kept = ["base"] + names[:done + 1]
            scores, probes, losses = (run_dir.read_csv(n) for n in ("scores.csv", "probe.csv", "losses.csv"))
            scores = scores[scores["after"].isin(kept)].to_dict("records")
            probes = probes[probes["after"].isin(kept)].to_dict("records")
            losses = losses[losses["stage"].isin(kept)].to_dict("records") if losses is not None else []
        else:
            scores = evaluate_stream(model, tokenizer, stream, strategy, "base", -1, config.eval_cap,
                                     config.eval_batch_size, config.progress)
            probes, losses = [{"after": "base", **base_probe}], []
        times = {}
        bar = tqdm(range(done + 1, len(stages)), desc="stages", initial=done + 1, total=len(stages),
                   disable=not config.progress)
        for i in bar:
            stage = stages[i]
            bar.set_postfix_str(stage.name)
            ctx = StageContext(index=i, task=stage.task, stream=stream, tokenizer=tokenizer,
                               device=distributed.local_device(device),
                               seed=config.seed, batch_size=config.batch_size, general_source=config.probe_text)
            t0 = time.time()
            losses += _train_stage(model, tokenizer, strategy, ctx, config, stage.steps)
            t1 = time.time()
            seen = len(stream.tasks) - 1 if stage.name == "joint" else i  # joint's one stage has seen every task
            scores += evaluate_stream(model, tokenizer, stream, strategy, stage.name, seen, config.eval_cap,
                                      config.eval_batch_size, config.progress)
            with strategy.eval_model(model, i) as deployed:  # the model as deployed after stage i
                probes.append({"after": stage.name, **probe.measure(deployed)})
            times[stage.name] = {"train_s": t1 - t0, "eval_s": time.time() - t1}
            _write_results(run_dir, stream, names, scores, probes, losses)
            _save_checkpoint(run_dir, model, strategy, i)

        run_dir.write_csv("predictions.csv", predict_stream(model, tokenizer, stream, strategy, names[-1],
                                                           len(stream.tasks) - 1, config.eval_cap,
                                                           config.eval_batch_size))
        result_summary = _summary(config, run_dir, stream, names, scores, probes, trainable, total, started, device,
                                  times)
        run_dir.write_json("summary.json", result_summary)
        if config.export and run_dir.writer:
            _export(run_dir, model, tokenizer)
        if not config.keep_checkpoint and run_dir.writer:
            shutil.rmtree(run_dir.checkpoint, ignore_errors=True)
        if run_dir.writer:
            from continual.plots import plot_run  # seaborn is imported only when a run finishes
            plot_run(run_dir.path)  # RUN/plots/; warns instead of raising: the results above are already complete
        distributed.barrier()  # every process returns the files the main process has just written
        return load_result(run_dir.path)
    except Exception as exc:
        _write_failure(run_dir, exc, names)
        raise
    finally:
        run_dir.close()


@dataclass
class Stage:
    name: str  # the row name in matrix.csv
    task: Task  # what is trained: a task of the stream, or all of them pooled (joint)
    steps: int


def stage_plan(stream: Stream, strategy, config: RunConfig) -> list[Stage]:
    if getattr(strategy, "joint", False):  # one stage on every task at once, as many steps as all stages
        # tasks of different formats hold different extra columns (DPO's rejected answers): pool the shared ones
        shared = [c for c in stream.tasks[0].train.column_names
                  if all(c in t.train.column_names for t in stream.tasks)]
        pooled = Task(name="joint", train=concatenate_datasets([t.train.select_columns(shared) for t in stream.tasks]),
                      eval=stream.tasks[0].eval, matrix_split=stream.tasks[0].matrix_split,
                      description="all tasks of the stream")
        return [Stage("joint", pooled, config.steps * len(stream.tasks))]
    return [Stage(t.name, t, config.steps) for t in stream.tasks]


def _train_stage(model, tokenizer, strategy, ctx: StageContext, config: RunConfig, steps: int,
                 callbacks=()) -> list[dict]:
    strategy.before_stage(model, ctx)
    seed = config.seed * 1000 + ctx.index
    examples = ctx.task.train.to_list()
    batches = [[examples[i] for i in b] for b in plan_batches(len(examples), steps, config.batch_size, seed)]
    batches = strategy.mix_batches(batches, ctx)
    distributed.check_same(json.dumps(batches, sort_keys=True, default=str), f"the batches of stage '{ctx.task.name}'")
    dpo = strategy.trainer == "dpo"
    columns = ("prompt", "completion", "rejected") if dpo else ("prompt", "completion")
    if dpo and "rejected" not in examples[0]:
        raise ContinualError(f"task '{ctx.task.name}' has no rejected answers, which DPO needs; use another strategy")
    flat = Dataset.from_list([{c: e[c] for c in columns} for batch in batches for e in batch])
    recorder = LossRecorder(ctx.task.name, config.strategy)
    with tempfile.TemporaryDirectory(prefix="continual-trainer-") as scratch:
        # data-parallel: the Trainer hands each of the N processes batch_size / N consecutive examples of each planned
        # batch, so the global batch and the example order are the single-process ones
        per_process = config.batch_size // distributed.world_size()
        common = dict(seed=seed, device=ctx.device, scheduler=config.scheduler, warmup_steps=config.warmup_steps,
                      max_grad_norm=config.max_grad_norm, progress=config.progress, output_dir=scratch,
                      precision=config.precision, compile=config.compile,
                      **{_checkpointing_flag(TrainingArguments): config.gradient_checkpointing})
        if dpo:
            from trl import DPOConfig
            dpo_part = next(p for p in strategy.parts if p.trainer == "dpo")
            args = training_arguments(steps, per_process, config.lr, args_class=DPOConfig, **common,
                                      beta=dpo_part.config.beta, loss_type=[dpo_part.config.loss_type],
                                      max_length=config.max_length)
            data = flat.rename_column("completion", "chosen")
            trainer = dpo_trainer_class()(model=model, ref_model=dpo_part.reference_model(model), args=args,
                                          train_dataset=data, processing_class=tokenizer, strategy=strategy,
                                          callbacks=[recorder, *callbacks])
        else:
            args = training_arguments(steps, per_process, config.lr, **common)
            trainer = StageTrainer(model=model, args=args, train_dataset=tokenize_completions(
                flat, tokenizer, config.max_length), strategy=strategy,
                data_collator=stage_collator(tokenizer, model, strategy, config.packing),
                callbacks=[recorder, *callbacks])
        quiet_logs(trainer)
        trainer.train()
    model.eval()
    strategy.after_stage(model, ctx)
    return recorder.rows


def _checkpointing_flag(args_class) -> str:
    """trl configs switch activation (gradient) checkpointing on by default; its flag was renamed in transformers 5."""
    names = getattr(args_class, "__dataclass_fields__", {})
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _write_results(run_dir: RunDir, stream: Stream, names: list[str], scores, probes, losses) -> None:
    frame = pd.DataFrame(scores)
    rows = ["base"] + names
    tasks = stream.task_names
    run_dir.write_csv("scores.csv", frame)
    run_dir.write_csv("matrix.csv", matrix_frame(frame, {t.name: t.matrix_split for t in stream.tasks}, rows, tasks),
                      index=True)
    for split in sorted({s for t in stream.tasks for s in t.eval if s != t.matrix_split}):
        run_dir.write_csv(f"matrix_{split}.csv", matrix_frame(frame, split, rows, tasks), index=True)
    run_dir.write_csv("probe.csv", pd.DataFrame(probes))
    run_dir.write_csv("losses.csv", pd.DataFrame(losses))


def _summary(config, run_dir, stream, names, scores, probes, trainable, total, started, device, times) -> dict:
    frame = pd.DataFrame(scores)
    tasks = stream.task_names
    matrix = matrix_frame(frame, {t.name: t.matrix_split for t in stream.tasks}, ["base"] + names, tasks)
    R, b = matrix.loc[names].to_numpy(), matrix.loc["base"].to_numpy()
    if names == tasks:
        metrics = summarise(R, b)
    else:  # joint: one row after one stage; transfer and forgetting do not apply
        metrics = {"acc": float(R[-1].mean()), "bwt": None, "fwt": None, "forgetting": None}
    final = probes[-1]
    memory, memory_kind = peak_memory_mb(device)
    return {
        "status": "completed", "config_hash": run_dir.hash, "stream": stream.name, "strategy": config.strategy,
        "model": config.model, "seed": config.seed, "lr": config.lr, "tasks": tasks, "stages": names, **metrics,
        "retention": final["retention"],
        "probe": {k: final[k] for k in ("cloze", "cloze_norm", "cloze_chance", "perplexity", "ppl_ratio", "kl")},
        "probe_base": {k: probes[0][k] for k in ("cloze", "cloze_norm", "perplexity")},
        "base_scores": dict(zip(tasks, b.tolist())),
        "conventions": CONVENTIONS, "matrix_split": {t.name: t.matrix_split for t in stream.tasks},
        "matrix_metric": {t.name: "rougeL_f1" if t.kind == "generation" else "accuracy" for t in stream.tasks},
        "trainable_parameters": trainable, "total_parameters": total,
        "wall_time_s": time.time() - started, "stage_times_s": times,
        "peak_memory_mb": memory, "peak_memory_kind": memory_kind, "device": device,
    }


def _write_failure(run_dir: RunDir, exc: Exception, names: list[str]) -> None:
    """Leave earlier stages' files as they are and say in summary.json where the run stopped."""
    if run_dir._lock is None or not (run_dir.path / "config.yaml").is_file():
        return  # nothing of this run was written yet: write nothing
    done = _resume_point(run_dir)
    failure = {"status": "failed", "config_hash": run_dir.hash,
               "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
               "stages_completed": done + 1, "failed_stage": names[done + 1] if done + 1 < len(names) else None,
               "resume": "re-run the same command to continue after the last completed stage"}
    try:
        run_dir.write_json("summary.json", failure)
    except ContinualError:
        pass  # e.g. the disk is still full: the original error is the one to report


# ---------------------------------------------------------------------------------------------- checkpoints

def _resume_point(run_dir: RunDir) -> int:
    """Index of the last stage whose checkpoint is complete, or -1."""
    state = run_dir.checkpoint / "state.json"
    if not state.is_file():
        return -1
    return int(json.loads(state.read_text())["stage"])


def _save_checkpoint(run_dir: RunDir, model, strategy, stage: int) -> None:
    """Every tensor of the model (adapters included) and the strategy state, swapped in atomically."""
    if not run_dir.writer:
        return  # data-parallel: every process holds the same weights and state; rank 0 saves them
    staging = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=run_dir.path))
    save_model(model, str(staging / "model.safetensors"))
    torch.save(strategy.state_dict(), staging / "strategy.pt")
    (staging / "state.json").write_text(json.dumps({"stage": stage}))
    old = run_dir.path / ".checkpoint-old"
    if run_dir.checkpoint.exists():
        os.replace(run_dir.checkpoint, old)
    os.replace(staging, run_dir.checkpoint)  # state.json appears with the folder, never before its weights
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(run_dir: RunDir, model, strategy):
    # the strategy first: it recreates what the weights need (per-task adapters)
    strategy.load_state_dict(torch.load(run_dir.checkpoint / "strategy.pt", weights_only=False), model)
    try:
        missing, unexpected = load_model_weights(model, str(run_dir.checkpoint / "model.safetensors"), strict=False)
    except Exception as exc:
        raise ContinualError(f"{run_dir.checkpoint} does not fit this model ({type(exc).__name__}); "
                             "use --fresh") from None
    if missing or unexpected:
        raise ContinualError(f"{run_dir.checkpoint} does not fit this model; use --fresh")
    return model


def _export(run_dir: RunDir, model, tokenizer) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=run_dir.path))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    target = run_dir.path / "model"
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def load_result(path: str | os.PathLike) -> RunResult:
    """Read a run directory back (complete or not) into DataFrames."""
    run_dir = RunDir(path, {}, "")
    matrix = pd.read_csv(Path(path) / "matrix.csv", index_col="after", float_precision="round_trip")
    return RunResult(Path(path), matrix, run_dir.read_csv("scores.csv"), run_dir.read_csv("probe.csv"),
                     run_dir.read_csv("losses.csv") if (Path(path) / "losses.csv").is_file() else pd.DataFrame(),
                     run_dir.read_summary() or {})
