"""The LLM continual-learning benchmarks the papers report on, read from a folder the user names:

  standard-cl    the Standard CL Benchmark (Zhang et al. 2015 tasks as used by LAMOL, ProgPrompt, O-LoRA, SAPT):
                 dbpedia (14 labels), amazon (5), yahoo (10), agnews (4); orders 1-3
  long-sequence  the Long Sequence benchmark (15 tasks: the four above, yelp, GLUE/SuperGLUE tasks, IMDB); orders 4-6
  trace          TRACE (Wang et al. 2023): C-STANCE, FOMC, MeetingBank, Py150, ScienceQA, NumGLUE-cm, NumGLUE-ds,
                 20Minuten, in TRACE's order

Two on-disk layouts are read (``data_dir``, or the environment variable CONTINUAL_BENCHMARK_DIR):

  TRACE / LLM-CL-Benchmark   <dir>/<task>/{train,eval,test}.json: a JSON list of {"prompt", "answer"}, plus
                             <task>/labels.json (the label strings) for classification tasks
  O-LoRA CL_Benchmark        <dir>/<category>/<task>/{train,dev,test}.json: a JSON list of {"sentence", "label"},
                             plus labels.json; the prompt is the category's instruction, "Option: " and the labels
                             joined by ", ", the sentence, then "Answer:" (how the TRACE-layout copies read)

Classification tasks are choice tasks over their labels (" " + label): scored by log-probability as every choice
task, and by exact match of the greedy answer (normalised: stripped, case-folded), as the papers score; ``metric``
picks which fills the matrix (default: exact match, the papers'). TRACE's other tasks are generation tasks scored
as TRACE scores them: ScienceQA by the answer letter, NumGLUE by the number, MeetingBank by ROUGE-L, Py150 by edit
similarity, 20Minuten by SARI (continual.answer_metrics). ``train_size`` / ``test_size`` sample each task's splits
deterministically from the seed (0: all of them; the shared copy has 500 / 100 per task).

``--source hub`` builds the Standard CL and Long Sequence tasks from their original hub datasets with the same
prompts (continual.streams.benchmarks_hub; amazon has no hub copy, TRACE is folder-only).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from continual.errors import ContinualError
from continual.options import Options, option
from continual.streams.task import Stream, Task

ENVIRONMENT = "CONTINUAL_BENCHMARK_DIR"
STANDARD = ["dbpedia", "amazon", "yahoo", "agnews"]
LONG = ["MNLI", "CB", "WiC", "COPA", "QQP", "BoolQA", "RTE", "IMDB", "yelp", "amazon", "SST-2", "dbpedia", "agnews",
        "MultiRC", "yahoo"]
TRACE = ["C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten"]
ORDERS = {
    "standard-cl": {"1": ["dbpedia", "amazon", "yahoo", "agnews"], "2": ["dbpedia", "amazon", "agnews", "yahoo"],
                    "3": ["yahoo", "amazon", "agnews", "dbpedia"]},
    "long-sequence": {"4": LONG,
                      "5": ["MultiRC", "BoolQA", "WiC", "MNLI", "CB", "COPA", "QQP", "RTE", "IMDB", "SST-2", "dbpedia",
                            "agnews", "yelp", "amazon", "yahoo"],
                      "6": ["yelp", "amazon", "MNLI", "CB", "COPA", "QQP", "RTE", "IMDB", "SST-2", "dbpedia", "agnews",
                            "yahoo", "MultiRC", "BoolQA", "WiC"]},
    "trace": {"trace": TRACE},
}
# TRACE's tasks that are not label classification: how their answers are scored
GENERATION = {"MeetingBank": "rougeL_f1", "Py150": "edit_similarity", "ScienceQA": "letter", "NumGLUE-cm": "number",
              "NumGLUE-ds": "number", "20Minuten": "sari"}
LETTERS = {"C-STANCE": ["A", "B", "C"], "FOMC": ["A", "B", "C"]}  # multiple choice by letter, no labels.json
# O-LoRA's CL_Benchmark: the instruction of each category (the TRACE-layout copies of these tasks begin with it)
INSTRUCTIONS = {
    "TC": "What is the topic of the following paragraph? Choose one from the option.",
    "SC": "What is the sentiment of the following paragraph? Choose one from the option.",
    "NLI": 'What is the logical relationship between the "sentence 1" and the "sentence 2"? Choose one from the option.',
    "QQP": 'Whether the "first sentence" and the "second sentence" have the same meaning? Choose one from the option.',
    "BoolQA": "According to the following passage, is the question true or false? Choose one from the option.",
    "MultiRC": "According to the following passage and question, is the candidate answer true or false? Choose one "
               "from the option.",
    "WiC": "Given a word and two sentences, whether the word is used with the same sense in both sentence? Choose one "
           "from the option.",
}
GET_DATA = ("pass --data-dir DIR (or set CONTINUAL_BENCHMARK_DIR) to a folder in the TRACE / LLM-CL-Benchmark layout "
            "(<task>/{train,eval,test}.json) or O-LoRA's CL_Benchmark layout (<category>/<task>/{train,dev,test}.json)")


@dataclass
class BenchmarkOptions(Options):
    data_dir: str = option("", "folder of the benchmark's tasks (either layout)", shown_default=f"${ENVIRONMENT}")
    tasks: str = option("", "comma-separated tasks to read (the others are not loaded: e.g. a task whose files are "
                        "missing)", shown_default="all of the benchmark's")
    train_size: int = option(0, "training examples per task, sampled by the seed (0: all of a folder's; from the "
                             "hub, 1,000 per class)", low=0)
    test_size: int = option(0, "evaluation examples per task, sampled by the seed (0: all of a folder's; from the "
                            "hub, up to 500 per class)", low=0)
    eval_split: str = option("test", "the split scored: test, or the validation split (eval / dev)",
                             choices=("test", "eval"))
    metric: str = option("exact-match", "what fills the matrix for classification tasks: exact-match (the greedy "
                         "answer, as the papers) or logprob (the best candidate by log-probability)",
                         choices=("exact-match", "logprob"))
    max_answer_tokens: int = option(64, "tokens a generated answer may take at most", low=1)


def data_folder(options: BenchmarkOptions, stream: str) -> Path:
    folder = options.data_dir or os.environ.get(ENVIRONMENT, "")
    if not folder:
        raise ContinualError(f"{stream} reads its data from a folder: {GET_DATA}")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ContinualError(f"{stream}: data folder '{folder}' does not exist; {GET_DATA}")
    return path


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContinualError(f"{what}: {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContinualError(f"{what}: {path} is not readable JSON ({type(exc).__name__}: {exc})") from None


def find_task(root: Path, name: str, stream: str) -> tuple[Path, str | None]:
    """(the task's folder, its O-LoRA category or None for the TRACE layout)."""
    if (root / name).is_dir():
        return root / name, None
    for category in sorted(p for p in root.iterdir() if p.is_dir()):
        for candidate in (category / name, category / name.lower()):
            if candidate.is_dir():
                return candidate, category.name
    raise ContinualError(f"{stream}: task '{name}' is not in {root} (looked for {root / name} and "
                         f"{root}/<category>/{name}); {GET_DATA}")


def olora_prompt(category: str, sentence: str, labels: list[str]) -> str:
    """O-LoRA's prompt of a CL_Benchmark example: instruction, options, the sentence, the answer cue."""
    instruction = INSTRUCTIONS.get(category)
    if instruction is None:  # COPA carries its question and choices in the sentence itself
        return f"{sentence}\nAnswer:"
    return f"{instruction}\nOption: {', '.join(labels)} \n{sentence}\nAnswer:"


def read_split(folder: Path, category: str | None, split: str, labels: list[str] | None, where: str) -> list[dict]:
    """[{prompt, answer}] of one split in either layout ("eval" is "dev" in O-LoRA's)."""
    name = split if category is None or split != "eval" else "dev"
    rows = _read_json(folder / f"{name}.json", where)
    if not isinstance(rows, list) or not rows:
        raise ContinualError(f"{where}: {folder / f'{name}.json'} holds no examples (a non-empty JSON list is "
                             "expected)")
    keys = ("prompt", "answer") if category is None else ("sentence", "label")
    bad = next((i for i, r in enumerate(rows) if not (isinstance(r, dict) and all(isinstance(r.get(k), str)
                                                                                   for k in keys))), None)
    if bad is not None:
        raise ContinualError(f"{where}: {folder / f'{name}.json'} item {bad} lacks the string fields "
                             f"{' and '.join(keys)}")
    if category is None:
        return [{"prompt": r["prompt"], "answer": r["answer"]} for r in rows]
    return [{"prompt": olora_prompt(category, r["sentence"], labels or []), "answer": r["label"]} for r in rows]


def _sample(rows: list[dict], size: int, rng: random.Random) -> list[dict]:
    return rng.sample(rows, size) if size and size < len(rows) else list(rows)


def folder_task(root: Path, name: str, stream: str, options: BenchmarkOptions, seed: int
                ) -> tuple[list[dict], list[dict], list[str] | None, Path]:
    """(train rows, scored rows, labels or None, where the labels came from) of one task read from the folder."""
    folder, category = find_task(root, name, stream)
    where = f"{stream} task '{name}'"
    labels = None
    if (folder / "labels.json").is_file():
        labels = _read_json(folder / "labels.json", where)
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x.strip() for x in labels)):
            raise ContinualError(f"{where}: {folder / 'labels.json'} must be a non-empty list of label strings")
    elif name in LETTERS:
        labels = LETTERS[name]
    elif name not in GENERATION and category is not None:
        raise ContinualError(f"{where}: {folder / 'labels.json'} is missing (O-LoRA's layout lists the labels there)")
    rng = random.Random(f"{stream}:{name}:{seed}")
    train = _sample(read_split(folder, category, "train", labels, where), options.train_size, rng)
    test = _sample(read_split(folder, category, options.eval_split, labels, where), options.test_size, rng)
    return train, test, labels, folder / "labels.json"


def hub_task(name: str, stream: str, options: BenchmarkOptions, seed: int
             ) -> tuple[list[dict], list[dict], list[str], str]:
    """The same, from the task's original hub dataset, with the benchmark copies' prompts."""
    from continual.streams.benchmarks_hub import HUB_TASKS, hub_splits
    train, test, labels = hub_splits(name, options.train_size, options.test_size, options.eval_split, seed, stream,
                                     GET_DATA)
    category = HUB_TASKS[name].category
    prompt = [{"prompt": olora_prompt(category, r["sentence"], labels), "answer": r["answer"]} for r in train]
    scored = [{"prompt": olora_prompt(category, r["sentence"], labels), "answer": r["answer"]} for r in test]
    return prompt, scored, labels, f"the labels of {HUB_TASKS[name].dataset}"


def benchmark_task(root: Path | None, name: str, stream: str, options: BenchmarkOptions, seed: int) -> Task:
    """One benchmark task from the folder ``root`` (or, ``root`` None, its hub dataset)."""
    where = f"{stream} task '{name}'"
    if root is None:
        train, test, labels, labels_file = hub_task(name, stream, options, seed)
    else:
        train, test, labels, labels_file = folder_task(root, name, stream, options, seed)
    description = f"{len(train)} train, {len(test)} {options.eval_split}"
    if labels is not None and name not in GENERATION:
        for split, rows in (("train", train), (options.eval_split, test)):
            stray = sorted({r["answer"].strip() for r in rows} - {x.strip() for x in labels})
            if stray:
                raise ContinualError(f"{where}: {split} answers {', '.join(map(repr, stray[:5]))} are not among "
                                     f"the labels {labels} of {labels_file}; fix the labels or the data")
        candidates = [" " + x.strip() for x in labels]
        index = {x.strip(): i for i, x in enumerate(labels)}
        return Task(name=name, kind="choice", matrix_split="test", classes=[],
                    train=Dataset.from_dict({"prompt": [r["prompt"] for r in train],
                                             # the label, then the line's end: trained to stop, the
                                             # greedy answer is the label alone (the papers train on label + EOS);
                                             # without it the model learns no end and goes on listing options
                                             "completion": [" " + r["answer"].strip() + "\n" for r in train]}),
                    eval={"test": Dataset.from_dict({"prompt": [r["prompt"] for r in test],
                                                     "candidates": [candidates] * len(test),
                                                     "label": [index[r["answer"].strip()] for r in test]})},
                    description=f"{len(labels)} labels, {description}", answer_metric="exact_match",
                    matrix_metric="answer" if options.metric == "exact-match" else "logprob",
                    max_answer_tokens=options.max_answer_tokens)
    metric = GENERATION.get(name, "exact_match")
    test_rows = {"prompt": [r["prompt"] for r in test], "reference": [r["answer"].strip() for r in test]}
    if metric == "sari":  # SARI needs the text being simplified: the prompt's paragraph
        test_rows["source"] = [r["prompt"].split("Paragraph:", 1)[-1].strip() for r in test]
    return Task(name=name, kind="generation", matrix_split="test",
                train=Dataset.from_dict({"prompt": [r["prompt"] for r in train],
                                         "completion": [" " + r["answer"].strip() + "\n" for r in train]}),
                eval={"test": Dataset.from_dict(test_rows)}, description=f"{metric}, {description}",
                answer_metric=metric, max_answer_tokens=options.max_answer_tokens)


def benchmark_stream(stream: str, tasks: list[str], seed: int, options: BenchmarkOptions, scenario: str,
                     description: str, source: str = "offline") -> Stream:
    """The benchmark's tasks from the user's folder (source offline: no network, nothing packaged) or, for
    standard-cl and long-sequence, from the original hub datasets (source hub)."""
    if source == "hub" and stream == "trace":
        raise ContinualError(f"trace is read from a local folder only (TRACE's tasks have no hub copies with its "
                             f"prompts); {GET_DATA}")
    if source == "hub" and options.data_dir:
        raise ContinualError(f"{stream}: --source hub reads the hub datasets, not a folder; drop --data-dir (or "
                             f"{stream}.data_dir) or the --source hub")
    root = None if source == "hub" else data_folder(options, stream)
    if options.tasks:
        picked = [t.strip() for t in options.tasks.split(",") if t.strip()]
        unknown = [t for t in picked if t not in tasks]
        if unknown:
            raise ContinualError(f"{stream}.tasks names {', '.join(unknown)}, not among {', '.join(tasks)}")
        tasks = [t for t in tasks if t in picked]
    built = [benchmark_task(root, name, stream, options, seed) for name in tasks]
    return Stream(stream, built, scenario=scenario, description=description, orders=ORDERS[stream],
                  options={"data_dir": str(root) if root else "", "source": source, "tasks": [t.name for t in built],
                           "train_size": options.train_size, "test_size": options.test_size,
                           "eval_split": options.eval_split, "metric": options.metric})


def build_standard(seed: int, source: str, options: BenchmarkOptions) -> Stream:
    return benchmark_stream("standard-cl", ORDERS["standard-cl"]["1"], seed, options,
                            "task-incremental (a new label set per task)", "Standard CL Benchmark: 4 text "
                            "classification tasks", source)


def build_long(seed: int, source: str, options: BenchmarkOptions) -> Stream:
    return benchmark_stream("long-sequence", LONG, seed, options, "task-incremental (a new label set per task)",
                            "Long Sequence benchmark: 15 classification tasks", source)


def build_trace(seed: int, source: str, options: BenchmarkOptions) -> Stream:
    return benchmark_stream("trace", TRACE, seed, options, "task-incremental (domains, languages, formats)",
                            "TRACE: 8 tasks (stance, policy, summaries, code, science, maths, simplification)", source)
