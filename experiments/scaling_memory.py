"""How much memory training a Llama-shaped model takes with the toolkit's trainer (docs/scaling.md).

    python experiments/scaling_memory.py arithmetic
        parameter counts of real shapes, built on the meta device (no memory), and the bytes per parameter that
        full fine-tuning with AdamW and LoRA need: does it fit one 80 GB GPU?
    python experiments/scaling_memory.py measure --shape small [--checkpointing] [--lora] [--precision bf16]
        a randomly initialised model of that shape trains a few steps through ``continual.training`` (the HF
        Trainer with the same arguments as a run) and prints the peak memory: torch.cuda.max_memory_allocated on a
        GPU, the process's peak RSS on CPU (run one configuration per process)
    python experiments/scaling_memory.py measure --shape llama-7b --lora --precision bf16 --checkpointing \
        --device cuda
        the 7B check on an 80 GB GPU (no 7B weights exist offline; random weights use the same memory)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

SHAPES = {
    # Llama-2-7B's published shape
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=32000),
    # Llama-3-8B's published shape (grouped-query attention, 128k vocabulary)
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256),
    # small enough to train on a laptop CPU, deep and long enough that activations dominate
    "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=8, num_attention_heads=4,
                  num_key_value_heads=4, vocab_size=8000),
}
GB = 1e9


def llama_config(shape: str) -> LlamaConfig:
    return LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, tie_word_embeddings=False)


def lora_wrap(model):
    """The toolkit's LoRA strategy (r 16, alpha 32, every linear layer of the blocks)."""
    import continual  # noqa: F401  (the package before strategies: strategies import the runner's modules)
    from strategies.lora import Lora
    return Lora().setup(model)


def arithmetic(shapes: list[str]) -> dict:
    rows = {}
    for shape in shapes:
        with torch.device("meta"):  # shapes only: nothing is allocated
            model = LlamaForCausalLM(llama_config(shape))
        n = sum(p.numel() for p in model.parameters())
        lora = sum(p.numel() for p in lora_wrap(model).parameters() if p.requires_grad)
        rows[shape] = {
            "parameters": n, "lora_parameters": lora,
            # AdamW, mixed precision as the Trainer does it: fp32 weights 4 + fp32 grads 4 + exp_avg 4 + exp_avg_sq 4
            "full_ft_adamw_fp32_states_GB": 16 * n / GB,
            # everything in bf16 (weights 2, grads 2, both moments 2+2): updates below bf16 resolution are lost
            "full_ft_adamw_pure_bf16_GB": 8 * n / GB,
            # LoRA: frozen base 4 (fp32) or 2 (bf16) bytes; adapters trained with fp32 weights, grads and moments
            "lora_fp32_base_GB": (4 * n + 16 * lora) / GB,
            "lora_bf16_base_GB": (2 * n + 16 * lora) / GB,
            # ZeRO-3 / FSDP FULL_SHARD on k GPUs: the 16 bytes per parameter split k ways
            "full_ft_fsdp_per_gpu_GB": {k: 16 * n / k / GB for k in (2, 4, 8)},
        }
    return rows


def measure(shape: str, device: str, lora: bool, precision: str, checkpointing: bool, batch: int, seq: int,
            steps: int) -> dict:
    from datasets import Dataset

    from continual.training import CompletionCollator, StageTrainer, quiet_logs, training_arguments

    torch.manual_seed(0)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.device(device):
        model = LlamaForCausalLM(llama_config(shape))
    if lora:
        model = lora_wrap(model)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    vocab = SHAPES[shape]["vocab_size"]
    ids = torch.randint(0, vocab, (steps * batch, seq)).tolist()
    data = Dataset.from_list([{"input_ids": row, "labels": row} for row in ids])
    args = training_arguments(steps, batch, 1e-4, seed=0, device=device, scheduler="constant", warmup_steps=0,
                              max_grad_norm=1.0, progress=False, precision=precision,
                              activation_checkpointing=checkpointing)
    trainer = StageTrainer(model=model, args=args, train_dataset=data, data_collator=CompletionCollator(0))
    quiet_logs(trainer)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    trainer.train()
    seconds = (time.time() - started) / steps
    result = {"shape": shape, "device": device, "lora": lora, "precision": precision,
              "gradient_checkpointing": checkpointing, "batch": batch, "seq": seq, "steps": steps,
              "parameters": sum(p.numel() for p in model.parameters()),
              "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "seconds_per_step": seconds}
    if device.startswith("cuda"):
        result["peak_allocated_GB"] = torch.cuda.max_memory_allocated() / GB
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result.update({"rss_before_model_MB": rss_start, "rss_after_model_MB": rss_model, "rss_peak_MB": peak,
                       "training_MB": peak - rss_model})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("arithmetic")
    a.add_argument("--shapes", default="llama-7b,llama-8b")
    m = sub.add_parser("measure")
    m.add_argument("--shape", default="small", choices=sorted(SHAPES))
    m.add_argument("--device", default="cpu")
    m.add_argument("--lora", action="store_true")
    m.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    m.add_argument("--checkpointing", action="store_true")
    m.add_argument("--batch", type=int, default=4)
    m.add_argument("--seq", type=int, default=512)
    m.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    if args.command == "arithmetic":
        print(json.dumps(arithmetic(args.shapes.split(",")), indent=2))
    else:
        print(json.dumps(measure(args.shape, args.device, args.lora, args.precision, args.checkpointing,
                                 args.batch, args.seq, args.steps), indent=2))


if __name__ == "__main__":
    main()
