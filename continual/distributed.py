"""Data-parallel runs: which process this is, and the few collectives the runner needs.

Under ``accelerate launch --multi_gpu --num_processes N -m continual run ...`` (or ``torchrun``) every process runs
the whole command. They share everything except which slice of each training batch they compute:

  - every process builds the same stream, model and batch plan (seeded; ``check_same`` verifies the plan);
  - the HF Trainer wraps the model in DDP and gives each process its share of every global batch;
  - scoring splits its forward passes across the processes and gathers the results (``shard`` / ``gather_dict``),
    so every process ends up with the same numbers without any padded duplicates;
  - only the main process (rank 0) holds the run directory's lock and writes files; the others wait at barriers.

In a plain single-process run none of this does anything: world size 1, rank 0, no collectives.

The collectives are torch.distributed's own, not accelerate's helpers (PartialState, gather_object,
broadcast_object_list): under ``accelerate launch --multi_gpu`` on a machine without GPUs (the CPU/gloo set-up the
tests use) accelerate 1.15's PartialState reports DistributedType.NO and one process although the gloo group spans
all of them, and its helpers then silently do nothing. The process group is the ground truth.
"""

from __future__ import annotations

import hashlib
import os
import sys

from continual.errors import ContinualError


def _dist():
    """torch.distributed, imported on first use: reading run directories (compare, plot, report) needs no torch."""
    import torch.distributed
    return torch.distributed


def launched() -> bool:
    """True when a launcher (accelerate launch, torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Join the process group the launcher set up (accelerate picks gloo on CPU, NCCL on GPUs). Idempotent."""
    if launched() and not _dist().is_initialized():
        from accelerate import PartialState
        PartialState()


def active() -> bool:
    if "torch" not in sys.modules:  # nothing imported torch, so no process group can have been set up
        return False
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def rank() -> int:
    return _dist().get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def local_device(device: str) -> str:
    """The device this process computes on: ``cuda`` means this process's own GPU (LOCAL_RANK) when launched."""
    if device == "cuda" and launched():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def barrier() -> None:
    if active():
        _dist().barrier()


def from_main(value):
    """The main process's ``value`` on every process (a synchronisation point: the others wait for it)."""
    if not active():
        return value
    box = [value]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def shard(items: list) -> list:
    """This process's share of ``items``: every world_size-th one, starting at its rank (all of them alone)."""
    return items[rank()::world_size()]


def gather_dict(part: dict) -> dict:
    """Merge every process's dict (disjoint keys) into one, the same on every process."""
    if not active():
        return part
    parts = [None] * world_size()
    _dist().all_gather_object(parts, part)
    merged = {}
    for p in parts:
        merged.update(p)
    return merged


def all_reduce_sum(tensors: dict[str, torch.Tensor], bucket_elements: int = 2**26) -> None:
    """Sum every tensor over the processes, in place: packed into flat buckets (per dtype and device, at most
    ``bucket_elements`` each, 256 MB of fp32) so that a Fisher of many small tensors costs few collectives and a
    large model's never needs a second full copy."""
    if not active():
        return
    import torch
    dist = _dist()
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors.values():
        groups.setdefault((t.dtype, t.device), []).append(t)
    for group in groups.values():
        bucket, size = [], 0
        for t in group + [None]:  # None flushes the last bucket
            if bucket and (t is None or size + t.numel() > bucket_elements):
                flat = torch.cat([b.reshape(-1) for b in bucket])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                offset = 0
                for b in bucket:
                    b.copy_(flat[offset:offset + b.numel()].view_as(b))
                    offset += b.numel()
                bucket, size = [], 0
            if t is not None:
                bucket.append(t)
                size += t.numel()


def check_same(value: str, what: str) -> None:
    """Raise on every process if the processes disagree on ``value`` (e.g. a digest of the stage's batch plan):
    data-parallel training is only correct if every process planned the same global batches."""
    if not active():
        return
    digests = [None] * world_size()
    _dist().all_gather_object(digests, hashlib.sha256(value.encode()).hexdigest())
    if len(set(digests)) > 1:
        raise ContinualError(f"the {world_size()} processes disagree on {what}; a strategy or stream must not depend "
                             "on anything but the seed (no unseeded randomness, no per-process state)")
