"""Data-parallel runs: the collectives on two gloo processes, rank-0-only writing, and a 2-process `accelerate launch`
run of naive, ewc and replay checked against the single-process run.

Tolerance of the end-to-end comparison: DDP sums each step's gradient as two half-batch sums (and the EWC Fisher as
two half sums), so weights differ from the single-process run in the last float bits. Losses, EWC penalties and probe
perplexities must agree to a relative 1e-4; an accuracy cell may differ by at most one example (1/n of its split),
which only a near-tie in a candidate's log-probability could cause.
"""

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import accelerate  # noqa: F401  (the 2-process test needs it: missing, this module fails rather than skips)
import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

import continual
from continual import distributed
from continual.config import RunConfig
from continual.errors import ContinualError
from continual.results import RunDir

STRATEGIES = ["naive", "ewc", "replay"]
RUN = dict(stream="facts", model="tiny", stream_options={"facts.camp_size": 3}, steps=3, batch_size=4,
           probe_options={"perplexity.tokens": 32, "kl.tokens": 16}, eval_cap=12, device="cpu", progress=False)
RTOL = 1e-4
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- collectives (gloo)

def _collectives_worker(rank: int, world: int, port: int, out: str) -> None:
    # what a launcher (accelerate launch, torchrun) sets; distributed.init() joins through accelerate's PartialState
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "CUDA_VISIBLE_DEVICES": ""})
    distributed.init()
    try:
        from continual.models import load_model
        from datasets import Dataset
        from strategies.ewc import diagonal_fisher

        results = {"shard": distributed.shard(list(range(7))), "rank": distributed.rank(),
                   "world": distributed.world_size(), "main": distributed.is_main()}
        # every process contributes its own keys; everybody ends with all of them
        results["gathered"] = distributed.gather_dict({f"r{rank}-{i}": rank * 10 + i for i in range(2)})
        # sums in place, also across more than one bucket
        tensors = {"a": torch.full((3,), float(rank + 1)), "b": torch.arange(4.0) * (rank + 1)}
        distributed.all_reduce_sum(tensors, bucket_elements=4)
        results["reduced"] = {k: v.tolist() for k, v in tensors.items()}
        distributed.check_same("the same plan", "the plan")
        try:
            distributed.check_same(f"plan of rank {rank}", "the plan")
            results["disagreement"] = None
        except ContinualError as exc:
            results["disagreement"] = str(exc)
        results["from_main"] = distributed.from_main(f"value of rank {rank}")
        # a directory another process holds: rank 0 is refused the lock, and every process stops with its error
        try:
            RunDir(f"{out}/locked", {}, "abc").open(fresh=False)
            results["refused"] = None
        except ContinualError as exc:
            results["refused"] = str(exc)
        # the EWC Fisher: each process squares its share of the examples, the sums are all-reduced
        loaded = load_model("tiny", seed=0)
        data = Dataset.from_list([{"prompt": f"Harry Potter is friend number {i} of", "completion": " Ron"}
                                  for i in range(5)])
        fisher = diagonal_fisher(loaded.model, data, loaded.tokenizer, max_length=64)
        torch.save({"results": results, "fisher": fisher}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def collectives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gloo")
    (folder / "locked").mkdir()
    holder = open(folder / "locked" / ".lock", "w")
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a running `continual run` on that directory would
    with socket.socket() as free:  # a free port for the rendezvous
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    mp.spawn(_collectives_worker, args=(2, port, str(folder)), nprocs=2, join=True)
    holder.close()
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_shard_gather_and_reduce_across_two_processes(collectives):
    r0, r1 = (c["results"] for c in collectives)
    assert (r0["rank"], r0["world"], r0["main"]) == (0, 2, True)
    assert (r1["rank"], r1["world"], r1["main"]) == (1, 2, False)
    assert r0["shard"] == [0, 2, 4, 6] and r1["shard"] == [1, 3, 5]  # every item once, none twice
    everything = {"r0-0": 0, "r0-1": 1, "r1-0": 10, "r1-1": 11}
    assert r0["gathered"] == r1["gathered"] == everything
    assert r0["reduced"] == r1["reduced"] == {"a": [3.0, 3.0, 3.0], "b": [0.0, 3.0, 6.0, 9.0]}


def test_every_process_gets_the_main_process_value_and_its_refusal(collectives):
    r0, r1 = (c["results"] for c in collectives)
    assert r0["from_main"] == r1["from_main"] == "value of rank 0"
    assert r0["refused"] == r1["refused"] and "another continual process is writing to" in r0["refused"]


def test_processes_that_plan_different_batches_are_stopped(collectives):
    for c in collectives:
        assert "the 2 processes disagree on the plan" in c["results"]["disagreement"]


def test_sharded_fisher_equals_the_single_process_fisher(collectives, tiny):
    from datasets import Dataset
    from strategies.ewc import diagonal_fisher
    data = Dataset.from_list([{"prompt": f"Harry Potter is friend number {i} of", "completion": " Ron"}
                              for i in range(5)])  # 5 examples: 3 on rank 0, 2 on rank 1
    single = diagonal_fisher(tiny.model, data, tiny.tokenizer, max_length=64)
    assert any(float(f.sum()) > 0 for f in single.values())
    for c in collectives:
        assert set(c["fisher"]) == set(single)
        for name, f in single.items():
            torch.testing.assert_close(c["fisher"][name], f, rtol=1e-5, atol=1e-12)


# ------------------------------------------------------------------------------------------- one writer

def test_only_the_main_process_locks_and_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    follower = RunDir(tmp_path / "run", {}, "abc")
    follower.open(fresh=False)
    follower.write_json("summary.json", {"status": "completed"})
    follower.write_csv("scores.csv", pd.DataFrame({"a": [1]}))
    assert not (tmp_path / "run").exists() and follower._lock is None  # no directory, no lock, no file
    monkeypatch.setattr(distributed, "is_main", lambda: True)
    main = RunDir(tmp_path / "run", {}, "abc")
    main.open(fresh=False)
    main.write_json("summary.json", {"status": "completed"})
    assert main._lock is not None and (tmp_path / "run" / "summary.json").is_file()
    main.close()


def test_launches_the_runner_cannot_serve_are_refused(monkeypatch):
    from continual.runner import check_data_parallel
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    check_data_parallel(RunConfig(batch_size=4, out="x"))
    with pytest.raises(ContinualError, match="batch_size 3 does not split over 2 processes"):
        check_data_parallel(RunConfig(batch_size=3, out="x"))
    with pytest.raises(ContinualError, match="names one GPU"):
        check_data_parallel(RunConfig(device="cuda:1", out="x"))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    check_data_parallel(RunConfig(batch_size=4, out="x"))  # ZeRO-2 keeps whole weights on every process
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(ContinualError, match="ZeRO-3 shard the weights"):
        check_data_parallel(RunConfig(batch_size=4, out="x"))
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ContinualError, match="FSDP"):
        check_data_parallel(RunConfig(batch_size=4, out="x"))


# ------------------------------------------------------------------------------------------- 2 processes end to end

def _flags(options: dict) -> list[str]:
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, dict):  # stream_options -> --stream-option KEY=VALUE, ...
            flags += [f for k, v in value.items() for f in (flag.removesuffix("s"), f"{k}={v}")]
        elif isinstance(value, bool):
            flags += [flag if value else "--no-" + flag[2:]]
        else:
            flags += [flag, str(value)]
    return flags


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same command twice: two processes under accelerate launch (gloo, CPU), and one process."""
    root = tmp_path_factory.mktemp("dp")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                              os.environ.get("PYTHONPATH")]))}
    # --multi_gpu is accelerate's torchrun launcher; with no GPU visible it runs CPU processes over gloo.
    # (`accelerate launch --cpu --num_processes 2` would start ONE process: its --cpu path runs multi-CPU only
    # through mpirun.)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "continual", "run", *_flags(RUN), "--strategy", ",".join(STRATEGIES), "--out", str(root / "dp")]
    done = subprocess.run(launch, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each launched process (OMP_NUM_THREADS=1): no thread oversubscription
    try:
        single = continual.run(strategy=",".join(STRATEGIES), out=str(root / "single"), **RUN)
    finally:
        torch.set_num_threads(threads)
    return {"dp": root / "dp", "single": single[0].path.parent, "stdout": done.stdout}


def _config(path):
    return yaml.safe_load((path / "config.yaml").read_text())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_match_one(runs, strategy):
    dp, single = runs["dp"] / strategy, runs["single"] / strategy
    assert _config(dp)["resolved"]["processes"] == 2 and _config(single)["resolved"]["processes"] == 1
    assert _config(dp)["config_hash"] == _config(single)["config_hash"]  # the same run, whatever the launcher

    # every example scored once: the same counts as one process (no padded duplicates, none missing)
    s_dp, s_one = pd.read_csv(dp / "scores.csv"), pd.read_csv(single / "scores.csv")
    pd.testing.assert_frame_equal(s_dp[["after", "task", "split", "n"]], s_one[["after", "task", "split", "n"]])
    for name in ("matrix.csv", "matrix_reversed.csv", "matrix_heldout.csv"):
        m_dp, m_one = (pd.read_csv(p / name, index_col="after") for p in (dp, single))
        assert m_dp.index.tolist() == m_one.index.tolist() and m_dp.columns.tolist() == m_one.columns.tolist()
        one_example = 1 / s_one["n"].min()
        assert np.abs(m_dp.to_numpy() - m_one.to_numpy()).max() <= one_example + 1e-12, name

    # the same global batches in the same order: every step's loss agrees
    l_dp, l_one = pd.read_csv(dp / "losses.csv"), pd.read_csv(single / "losses.csv")
    assert l_dp[["stage", "step"]].equals(l_one[["stage", "step"]])
    np.testing.assert_allclose(l_dp["loss"], l_one["loss"], rtol=RTOL)
    if strategy == "ewc":  # the penalty is applied under DDP (Fisher all-reduced) and equals the single-process one
        later = (l_one["stage"] != "hogwarts") & (l_one["step"] > 1)  # a stage's first step sits on the anchor
        assert (l_dp.loc[later, "ewc_penalty"] > 0).all()
        np.testing.assert_allclose(l_dp["ewc_penalty"], l_one["ewc_penalty"], rtol=RTOL)
    p_dp, p_one = pd.read_csv(dp / "probe.csv"), pd.read_csv(single / "probe.csv")
    np.testing.assert_allclose(p_dp["perplexity"], p_one["perplexity"], rtol=RTOL)


def test_the_main_process_alone_writes_and_prints(runs):
    for strategy in STRATEGIES:
        names = sorted(os.listdir(runs["dp"] / strategy))
        assert names == sorted(os.listdir(runs["single"] / strategy))  # no temporary or per-rank leftovers
        assert "checkpoint" not in names
    for strategy in STRATEGIES:  # results printed once, not once per process
        assert runs["stdout"].count(f"== facts / {strategy} / tiny") == 1
