"""The stage loop: for each stage, train it, score every task, run the probes, write results.

    base model -> probes calibrated + every task scored (row "base"; class-incremental: also over every label)
    for each stage of the strategy's plan: train (continual.training.train_stage) -> score every task -> probes
    -> result files + checkpoint
    -> metrics -> summary.json (and, from the last stage's scoring pass, predictions.csv)

Each finished stage leaves a checkpoint (model + strategy state); re-running the same command resumes after the
last finished stage. Stage i trains with seed (seed, i), so a resumed run repeats an uninterrupted one. Nothing
here knows a strategy, stream or probe by name: each brings its own plan, options, trainer and columns.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_model as load_model_weights
from safetensors.torch import save_model
from tqdm.auto import tqdm

from continual import distributed
from continual.config import RunConfig
from continual.console import model_label, routed_output
from continual.errors import ContinualError
from continual.evaluation import PREDICTION_COLUMNS, evaluate_stream
from continual.metrics import CONVENTIONS, summarise
from continual.models import load_model, parameter_counts
from continual.probes import ProbeContext, check_columns, make_probes
from continual.results import CHECKPOINT_ROWS, FINAL_LABELS, Run, RunDir, write_atomic
from continual.streams import Stream, Task, get_stream, stream_spec
from continual.streams.build import fit_to_length, hold_out_validation
from continual.training import train_stage
from strategies import STRATEGIES, StageContext, make_strategy

RunResult = Run  # what ``continual.run`` returns: the run directory's contents, in memory


def run(config: RunConfig | None = None, *, on_finish: Callable[[Run], None] | None = None, callbacks=(),
        **overrides) -> Run | list[Run]:
    """Run one strategy (a Run) or several comma-separated ones into OUT/<strategy>/ (a list).

    A strategy may be a '+' combination of parts; ``strategy_options`` keys are '<part>.<option>' and go to every
    run whose strategy has that part. ``on_finish(run)`` is called as each strategy's run finishes (the CLI prints
    its tables then, not after the last one). ``callbacks``: transformers ``TrainerCallback``s (classes or
    instances) added to every stage's Trainer, besides the run's own (``report_to`` picks the Trainer's trackers).
    """
    config = dataclasses.replace(config or RunConfig(), **overrides)
    specs = [s.strip() for s in config.strategy.split(",")]
    if len(set(specs)) != len(specs) or "" in specs:
        raise ContinualError(f"--strategy lists '{config.strategy}': name each strategy once, comma-separated")
    part_names = {spec: [p.name for p in make_strategy(spec).parts] for spec in specs}
    stray = [k for k in config.strategy_options
             if not any(k.partition(".")[0] in names for names in part_names.values())]
    if stray:
        raise ContinualError(f"strategy option(s) {', '.join(stray)} name no strategy of '{config.strategy}'; write "
                             "<strategy>.<option>=<value> (`continual list` shows each strategy's options)")
    configs = [dataclasses.replace(config, strategy=spec, out=config.out if len(specs) == 1 else
                                   os.path.join(config.out, spec),
                                   strategy_options={k: v for k, v in config.strategy_options.items()
                                                     if k.partition(".")[0] in part_names[spec]})
               for spec in specs]
    for c in configs:
        resolve(c)  # every option of every run checked before the first run starts
    results = []
    for c in configs:
        results.append(run_one(c, callbacks=callbacks))
        if on_finish is not None:
            on_finish(results[-1])
    return results[0] if len(specs) == 1 else results


# Top-level flags that are an option of the run's stream (by option name); probes declare theirs (Probe.flags).
STREAM_FLAGS = ("data_dir", "metric", "train_size", "test_size")


def _fold_flags(config: RunConfig, spec) -> tuple[dict, dict]:
    """(stream options, probe options) with the top-level flags that stand for options (--data-dir, --metric,
    --train-size, --test-size, --probe-limit, ...) folded in as those options; a flag that no part of this run has
    is refused."""
    from continual.probes import PROBES
    stream_options, probe_options = dict(config.stream_options), dict(config.probe_options)
    for field in STREAM_FLAGS:
        value, flag = getattr(config, field), "--" + field.replace("_", "-")
        if value in ("", None):
            continue
        if spec is None:
            raise ContinualError(f"{flag} does not apply to a stream file: set it in {config.stream}")
        if field not in {f.name for f in dataclasses.fields(spec.options)}:
            raise ContinualError(f"{flag} does not apply to stream '{spec.name}', which has no {field} option; "
                                 "drop it")
        stream_options.setdefault(f"{spec.name}.{field}", value)
    in_run = [p.strip().partition(":")[0] for p in config.probe.split(",")]
    for name in PROBES.names():
        for field, option_name in PROBES.resolve(name).value.flags.items():
            value = getattr(config, field)
            if value in ("", None):
                continue
            if name not in in_run:
                raise ContinualError(f"--{field.replace('_', '-')} sets the {name} probe, which this run does not "
                                     f"use; add it to --probe or drop the flag")
            probe_options.setdefault(f"{name}.{option_name}", value)
    return stream_options, probe_options


def resolve(config: RunConfig):
    """(config with every option resolved and typed, strategy, probes): the strategy's, stream's and probes' full
    options (defaults included) and the learning rate, so that the same run has the same hash however it was
    spelled."""
    spec = stream_spec(config.stream)
    given_stream_options, given_probe_options = _fold_flags(config, spec)
    strategy = make_strategy(config.strategy, config.strategy_options)
    probes = make_probes(config.probe, given_probe_options)
    stream_options = {}
    if spec is not None:
        from continual.options import build, split_namespaced
        own = split_namespaced(given_stream_options, [spec.name], "stream option", f"{spec.name}.<option>=<value>")
        stream_options = {f"{spec.name}.{k}": v
                          for k, v in dataclasses.asdict(build(spec.options, own[spec.name], f"{spec.name}.")).items()}
    elif given_stream_options:
        raise ContinualError(f"stream options do not apply to a stream file: set them in {config.stream}")
    typed = {f"{p.name}.{k}": v for p in strategy.parts for k, v in p.describe().items()}
    probe_options = {f"{p.name}.{k}": v for p in probes for k, v in p.describe().items()}
    # the flags now live in the options they stand for: one spelling, one hash
    config = dataclasses.replace(config, strategy_options=typed, stream_options=stream_options,
                                 probe_options=probe_options, data_dir="", metric="", train_size=None,
                                 test_size=None, probe_limit=None,
                                 probe_include="", lr=config.lr if config.lr is not None else strategy.default_lr)
    return config, strategy, probes


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
                             "DeepSpeed ZeRO-1/2, and fit a large model with adapters (docs/scaling.md)")
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
    """The stream of a config: built from its source and options, tasks picked by --tasks, then ordered by
    --order."""
    spec = stream_spec(config.stream)
    stream_options = _fold_flags(config, spec)[0]  # --data-dir, --metric (a resolved config has none left)
    own = {k.partition(".")[2]: v for k, v in stream_options.items()} if spec is not None else {}
    stream = get_stream(config.stream, seed=config.seed, source=config.source, options=own)
    by_name = {t.name: t for t in stream.tasks}
    if config.tasks:
        names = [t.strip() for t in config.tasks.split(",")]
        unknown = [n for n in names if n not in by_name]
        if unknown or len(set(names)) != len(names):
            raise ContinualError(f"--tasks '{config.tasks}' must name distinct tasks of stream '{stream.name}': "
                                 f"{', '.join(by_name)}")
        stream.tasks = [by_name[n] for n in names]
    stream.tasks = ordered(stream.tasks, config.order, config.seed, stream.orders)
    if config.validation_size:
        hold_out_validation(stream, config.validation_size, config.seed)
    return stream


def ordered(tasks: list[Task], order: str, seed: int, named: dict[str, list[str]] | None = None) -> list[Task]:
    """given (as listed), reversed, random (shuffled by the seed), one of the stream's named orders (the papers'),
    or an explicit comma-separated list of every task. The order changes results (which task is forgotten), so it
    is part of the run's identity."""
    if named and order in named:  # a named order of the tasks picked (--tasks may have dropped some)
        by_name = {t.name: t for t in tasks}
        return [by_name[n] for n in named[order] if n in by_name]
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
        listed = f", {', '.join(named)}" if named else ""
        raise ContinualError(f"--order '{order}' must be given, reversed, random{listed} or a comma-separated list "
                             f"of exactly these tasks: {', '.join(by_name)}")
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
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "transformers": transformers.__version__, "datasets": datasets.__version__, "peft": peft.__version__,
            "numpy": np.__version__, "pandas": pd.__version__}


def peak_memory_mb(device: str) -> tuple[float, str]:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS (ru_maxrss)"


def run_one(config: RunConfig, callbacks=()) -> Run:
    import datasets
    import transformers
    datasets.disable_progress_bars()  # library-internal bars (map, weight loading, shard writing) are noise here;
    transformers.utils.logging.disable_progress_bar()  # ours are stages, training steps and evaluation
    with routed_output(config.progress):  # warnings once each, above the bars, not inside them
        return _run_one(config, callbacks)


def with_final_labels(base_rows: list[dict], final_rows: list[dict]) -> None:
    """Add to each base score row its score in the final stage's label space (class-incremental streams score b[j]
    over the labels of tasks 0..j, the last row over all of them; the base row a table compares with the final
    row must be scored over all of them too)."""
    final = {(r["task"], r["split"]): r for r in final_rows}
    for row in base_rows:
        other = final[(row["task"], row["split"])]
        row[FINAL_LABELS] = other["accuracy"]
        row[f"{FINAL_LABELS}_stderr"] = other["stderr"]


def _probe_bar(probes, after: str, progress: bool):
    """The probes' pass over one model, as one bar labelled with the model and the probe being measured."""
    bar = tqdm(probes, desc=f"{model_label(after)}: probe", leave=False, disable=not progress)
    for probe in bar:
        bar.set_postfix_str(probe.name)
        yield probe


def _run_one(config: RunConfig, callbacks) -> Run:
    started = time.time()
    distributed.init()  # under accelerate launch / torchrun: join the process group (one process: nothing)
    check_data_parallel(config)
    if not distributed.is_main():
        config = dataclasses.replace(config, progress=False)  # one set of progress bars (progress is not hashed)
    device = resolve_device(config.device)
    if config.precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ContinualError("this GPU has no bf16 support; use --precision fp32 (or auto)")
    config, strategy, probes = resolve(dataclasses.replace(config, device=device))
    stream = stream_for(config)
    strategy.check_stream(stream)
    data = stream.fingerprint()  # the examples themselves are part of the run's identity
    run_dir = RunDir(config.out, config.identity(data), config.config_hash(data))
    run_dir.check(config.fresh)  # refuse a foreign directory before the (slow) model load
    loaded = load_model(config.model, seed=config.seed)
    strategy.check_model(loaded.model)  # e.g. LoRA targets the model lacks: refused before anything is written
    tokenizer, model = loaded.tokenizer, loaded.model.to(distributed.local_device(device))
    stream = fit_to_length(format_stream(stream, tokenizer, config.chat_template), tokenizer, config.max_length)
    stages = strategy.stage_plan(stream, config.steps)
    names = [st.name for st in stages]

    run_dir.open(config.fresh)
    try:  # read and check what is there before anything is written: a damaged directory stays as it was
        where = run_dir.inspect(names, stream.task_names)
    except BaseException:
        run_dir.close()
        raise
    if where.completed is not None:
        run_dir.close()
        return where.completed  # a finished run is read, never written
    ran = False  # whether this call ran (part of) a stage: only then is a failure recorded
    done = where.done
    try:
        for probe in probes:  # the probes' text and items
            probe.setup(ProbeContext(tokenizer=tokenizer, general_text=config.general_text,
                                     batch_size=config.eval_batch_size, seed=config.seed, stream=stream))
        base_probe = {"after": "base"}
        for probe in _probe_bar(probes, "base", config.progress):  # the base model's rows; probes that compare
            base_probe.update(probe.calibrate(model))                # with the base keep what they need
        check_columns(probes)  # declared by now (a probe may learn its columns from its first measurement)
        columns = {c.name: c.to_dict(p.name) for p in probes for c in p.columns()}
        resolved = {"model_source": loaded.source, "device": device, "stream": stream.name,
                    "scenario": stream.scenario, "stream_options": stream.options,
                    "tasks": {t.name: t.description for t in stream.tasks},
                    "matrix_split": {t.name: t.matrix_split for t in stream.tasks},
                    "prompts": "chat template" if config.chat_template else "plain",
                    "probe_model": strategy.probe_model_note(), "probe_columns": columns,
                    "processes": distributed.world_size(), "strategy": strategy.describe()}

        # set-up draws from the global RNG (adapters' initial weights): seeded here, it does not depend on what ran
        # before in this process (an earlier strategy of --strategy a,b; the launcher's process-group start-up)
        torch.manual_seed(config.seed)
        model = strategy.setup(model)
        trainable, total = parameter_counts(model)

        if done >= 0:
            model = _load_checkpoint(run_dir, model, strategy, where.strategy_state)
        # written once the checkpoint has loaded: a resume that fails leaves the directory as it was
        run_dir.write_yaml("config.yaml", {"config_hash": run_dir.hash, "config": dataclasses.asdict(config),
                                           "resolved": resolved, "versions": versions()})
        if done >= 0:
            # the checkpoint's rows (base .. its stage): rows of a later stage, written before a crash, are dropped
            # and that stage runs again; result files lost or damaged since are rebuilt from these rows
            scores, probe_rows, losses = (where.rows[n].to_dict("records") for n in CHECKPOINT_ROWS)
            run_dir.write_results(_in_memory(run_dir, config, resolved, scores, probe_rows, losses))
        else:
            ran = True
            scores = evaluate_stream(model, tokenizer, stream, strategy, "base", -1, config.eval_cap,
                                     config.eval_batch_size, config.progress)
            if stream.class_incremental:  # the base model over every label too: what the final row is scored over
                final = evaluate_stream(model, tokenizer, stream, strategy, "base", len(stream.tasks) - 1,
                                        config.eval_cap, config.eval_batch_size, config.progress)
                with_final_labels(scores, final)
            probe_rows, losses = [base_probe], []
        times, predictions = {}, None
        bar = tqdm(range(done + 1, len(stages)), desc="stages", initial=done + 1, total=len(stages),
                   disable=not config.progress)
        for i in bar:
            stage, ran = stages[i], True
            bar.set_postfix_str(stage.name)
            ctx = StageContext(index=i, task=stage.task, stream=stream, tokenizer=tokenizer,
                               device=distributed.local_device(device), seed=config.seed,
                               batch_size=config.batch_size, general_source=config.general_text,
                               max_length=config.max_length, save=run_dir.save_strategy_file,
                               last=i == len(stages) - 1)
            t0 = time.time()
            losses += train_stage(model, strategy, ctx, config, stage.steps, callbacks=callbacks)
            t1 = time.time()
            last = ctx.last
            scored = evaluate_stream(model, tokenizer, stream, strategy, stage.name, stage.seen, config.eval_cap,
                                     config.eval_batch_size, config.progress, predictions=last)
            if last:  # the final model's answers come from the same pass
                scored, predictions = scored
            scores += scored
            row = {"after": stage.name}
            with strategy.eval_model(model, i) as deployed:  # the model as deployed after stage i
                for probe in _probe_bar(probes, stage.name, config.progress):
                    row.update(probe.measure(deployed))
            probe_rows.append(row)
            times[stage.name] = {"train_s": t1 - t0, "eval_s": time.time() - t1}
            result = _in_memory(run_dir, config, resolved, scores, probe_rows, losses)
            run_dir.write_results(result)
            _save_checkpoint(run_dir, model, strategy, i, result)
            done = i

        if predictions is None:  # resumed after the last stage had finished: score the final model once more
            _, predictions = evaluate_stream(model, tokenizer, stream, strategy, names[-1], stages[-1].seen,
                                             config.eval_cap, config.eval_batch_size, predictions=True)
        run_dir.write_csv("predictions.csv", pd.DataFrame(predictions, columns=PREDICTION_COLUMNS), text=True)
        result = _in_memory(run_dir, config, resolved, scores, probe_rows, losses)
        result.summary = summarise_run(result, config, strategy, stream, names, columns, trainable, total,
                                       started, device, times, run_dir.hash)
        run_dir.write_json("summary.json", result.summary)
        if config.export and run_dir.writer:
            _export(run_dir, model, tokenizer)
        if not config.keep_checkpoint and run_dir.writer:
            shutil.rmtree(run_dir.checkpoint, ignore_errors=True)
        if config.plots and run_dir.writer:
            from continual.plots import plot_run  # seaborn is imported only when a run finishes
            plot_run(result)  # RUN/plots/; warns instead of raising: the results above are already complete
        distributed.barrier()  # every process returns once the main process has written the files
        return result
    except BaseException as exc:  # an error, Ctrl-C or SIGTERM (the CLI turns it into KeyboardInterrupt)
        if ran:
            _write_failure(run_dir, exc, names, done)
        raise
    finally:
        run_dir.close()


def _in_memory(run_dir: RunDir, config: RunConfig, resolved: dict, scores, probe_rows, losses) -> Run:
    return Run(run_dir.path, dataclasses.asdict(config), {}, pd.DataFrame(scores), pd.DataFrame(probe_rows),
               pd.DataFrame(losses), resolved)


def summarise_run(run: Run, config: RunConfig, strategy, stream: Stream, names: list[str], columns: dict,
                  trainable: int, total: int, started: float, device: str, times: dict,
                  config_hash: str | None = None) -> dict:
    """summary.json: the matrix metrics with their conventions, the probes' final and base rows with their
    declarations, and what the run cost."""
    tasks = stream.task_names
    matrix = run.matrix
    R, b = matrix.loc[names].to_numpy(), matrix.loc["base"].to_numpy()
    if names == tasks:
        metrics = summarise(R, b)
    else:  # a plan whose stages are not one per task (a pooled reference): transfer and forgetting do not apply
        acc = float(R[-1].mean())
        metrics = {"acc": acc, "bwt": None, "fwt": None, "forgetting": None, "op": acc, "bwt_trace": None, "aa": acc}
    probe = run.probe.set_index("after")
    memory, memory_kind = peak_memory_mb(device)
    return {
        "status": "completed", "config_hash": config_hash or config.config_hash(), "stream": stream.name,
        "strategy": config.strategy,
        "strategy_rank": STRATEGIES.names().index(config.strategy) if config.strategy in STRATEGIES else None,
        "reference": strategy.reference, "model": config.model, "seed": config.seed, "lr": config.lr,
        "tasks": tasks, "stages": names, **metrics,
        "probe": {c: _number(probe.loc[names[-1], c]) for c in columns},
        "probe_base": {c: _number(probe.loc["base", c]) for c in columns},
        "probe_columns": columns,
        "conventions": {**CONVENTIONS, **{c: d["description"] for c, d in columns.items()}},
        "matrix_split": {t.name: t.matrix_split for t in stream.tasks},
        "matrix_metric": {t.name: t.scored_by for t in stream.tasks},
        "trainable_parameters": trainable, "total_parameters": total,
        "wall_time_s": time.time() - started, "stage_times_s": times,
        "peak_memory_mb": memory, "peak_memory_kind": memory_kind, "device": device,
    }


def _number(value):
    value = float(value)
    return None if not np.isfinite(value) else value


def _write_failure(run_dir: RunDir, exc: BaseException, names: list[str], done: int) -> None:
    """Leave earlier stages' files as they are and say in summary.json where the run stopped (``done``: the last
    finished stage)."""
    if not run_dir.locked or not (run_dir.path / "config.yaml").is_file():
        return  # nothing of this run was written yet: write nothing
    reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else (
        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    failure = {"status": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
               "config_hash": run_dir.hash, "error": reason,
               "stages_completed": done + 1, "failed_stage": names[done + 1] if done + 1 < len(names) else None,
               "resume": "re-run the same command to continue after the last completed stage"}
    try:
        run_dir.write_json("summary.json", failure)
    except ContinualError:
        pass  # e.g. the disk is still full: the original error is the one to report


# ---------------------------------------------------------------------------------------------- checkpoints

def _save_checkpoint(run_dir: RunDir, model, strategy, stage: int, result: Run) -> None:
    """Every tensor of the model (adapters included), the strategy state and the rows so far, written beside the
    previous checkpoint and swapped in: a failed write (disk full) leaves the previous one usable."""
    if not run_dir.writer:
        return  # data-parallel: every process holds the same weights and state; rank 0 saves them
    from safetensors import SafetensorError
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=run_dir.path))
        save_model(model, str(staging / "model.safetensors"))
        torch.save(strategy.state_dict(), staging / "strategy.pt")
        for name in CHECKPOINT_ROWS:  # a resume reads these, whatever happened to the result files since
            write_atomic(staging / f"{name}.csv", getattr(result, name).to_csv(index=False))
        write_atomic(staging / "state.json", json.dumps({"stage": stage}))
        old = run_dir.path / ".checkpoint-old"
        if run_dir.checkpoint.exists():
            os.replace(run_dir.checkpoint, old)
        os.replace(staging, run_dir.checkpoint)  # state.json appears with the folder, never before its weights
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, SafetensorError, RuntimeError, ContinualError) as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ContinualError):
            raise
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or (
            "failed writing" in text)  # torch.save's stream writer says only that
        where = run_dir.checkpoint
        if full:
            raise ContinualError(f"disk full while writing the checkpoint {where}; free space and re-run the same "
                                 "command to resume (the previous checkpoint is kept)") from None
        raise ContinualError(f"could not write the checkpoint {where}: {text}; check the output folder and re-run "
                             "to resume (the previous checkpoint is kept)") from None


def _load_checkpoint(run_dir: RunDir, model, strategy, saved):
    """The checkpoint's strategy state (read by RunDir.inspect) and weights into a freshly set-up model."""
    state = run_dir.checkpoint / "strategy.pt"
    try:  # the strategy first: it recreates what the weights need (per-task adapters)
        strategy.load_state_dict(saved, model)
    except ContinualError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ContinualError(f"{state} does not hold this strategy's state ({type(exc).__name__}: {exc}); re-run "
                             "with --fresh to start over") from None
    weights = run_dir.checkpoint / "model.safetensors"
    try:
        missing, unexpected = load_model_weights(model, str(weights), strict=False)
    except Exception as exc:  # noqa: BLE001
        raise ContinualError(f"{weights} cannot be loaded into this model ({type(exc).__name__}); re-run with "
                             "--fresh to start over") from None
    if missing or unexpected:
        raise ContinualError(f"{weights} does not fit this model ({len(missing)} missing, {len(unexpected)} "
                             "unexpected tensors); re-run with --fresh to start over")
    return model


def _export(run_dir: RunDir, model, tokenizer) -> None:
    """OUT/model: save_pretrained of the final model (or its adapters) and the tokenizer, swapped in whole."""
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".model-", dir=run_dir.path))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        target = run_dir.path / "model"
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except (OSError, RuntimeError) as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)
        raise ContinualError(("disk full while exporting" if full else "could not export") + f" the model to "
                             f"{run_dir.path / 'model'} ({type(exc).__name__}); the run's results are complete: "
                             "free space or fix the folder, then re-run with --export") from None


def load_result(path: str | os.PathLike) -> Run:
    """Read a run directory back (complete or not)."""
    return Run.load(path)
