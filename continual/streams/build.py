"""Turn loaded data into tasks: balanced, deterministic splits of labelled text (choice tasks) or of
prompt/response pairs (generation tasks).

Splits are drawn with a random.Random seeded by (seed, task name): the same seed gives the same examples on every
machine. Texts are cut to ``max_words`` words so that prompt and answer fit the default training length (64
tokens) and the answer is never truncated away; texts are de-duplicated before splitting, so no example is both
trained and evaluated.
"""

from __future__ import annotations

import random
import re
import string
from collections import defaultdict

from datasets import Dataset

from continual.errors import ContinualError
from continual.streams.sources import SOURCES
from continual.streams.task import Task, answer_of

TEXT_FIELD = "{text}"


def select_tasks(stream: str, source: str, offline: dict, hub: dict, tasks: list[str] | None) -> tuple[dict, list[str]]:
    """(the source's task table, the task names to build: ``tasks`` or all of the table, in its order)."""
    if source not in SOURCES:
        raise ContinualError(f"unknown source '{source}'; choose one of: {', '.join(SOURCES)}")
    table = offline if source == "offline" else hub
    names = tasks or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ContinualError(f"{stream} ({source}) has no task(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(table)}")
    return table, names


def check_template(template: str, where: str, field: str = TEXT_FIELD,
                   fields: list[str] | None = None) -> None:
    """A template holds ``field``; or, given ``fields`` (the data's columns), one or more of {name} for them."""
    if fields is not None:
        names = placeholders(template, where)
        if not names:
            raise ContinualError(f"{where}: prompt template {template!r} lacks the placeholder {field} (or a column of "
                                 f"the data in braces: {', '.join('{' + f + '}' for f in fields[:6])})")
        unknown = [n for n in names if n not in fields]
        if unknown:
            named = ", ".join("{" + n + "}" for n in unknown)
            raise ContinualError(f"{where}: prompt template {template!r} names {named}, which the data lacks; it has: "
                                 f"{', '.join(fields)}")
        return
    if field not in template:
        raise ContinualError(f"{where}: prompt template {template!r} lacks the placeholder {field}")
    try:
        template.replace(field, "").format()
    except (IndexError, KeyError, ValueError):
        raise ContinualError(f"{where}: prompt template {template!r} may only hold the placeholder {field} (write "
                             "literal braces as {{ and }})") from None


def placeholders(template: str, where: str) -> list[str]:
    """The {name} placeholders of a template, in order of first use."""
    try:
        parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        raise ContinualError(f"{where}: prompt template {template!r} has an unmatched brace (write literal braces as "
                             "{{ and }})") from None
    if any(not name.strip() or name.isdigit() or spec or conversion for name, spec, conversion in parsed):
        raise ContinualError(f"{where}: prompt template {template!r} may hold only named placeholders such as {{text}} "
                             "or a column name in braces (no positions, formats or conversions)")
    parsed = [name for name, _, _ in parsed]
    return list(dict.fromkeys(parsed))


def render(template: str, values: dict[str, str]) -> str:
    """The template with each {name} replaced by its value, in one pass (a value holding braces stays as it is)."""
    if len(values) == 1:
        (name, value), = values.items()
        return template.replace("{" + name + "}", value)
    pattern = re.compile("|".join(re.escape("{" + n + "}") for n in values))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)


def shorten(text: str, max_words: int) -> str:
    words = str(text).split()  # any run of whitespace (newlines too) becomes one space
    return " ".join(words[:max_words] if max_words else words)


def choice_task(name: str, data: Dataset, verbalizer: dict[str, str], template: str, train_size: int,
                test_size: int, seed: int, description: str = "", max_words: int = 32,
                where: str | None = None, fields: list[str] | None = None) -> Task:
    """A classification task scored by candidate log-probability.

    ``data`` has columns text and label (the source's class names); ``verbalizer`` maps every class name to the
    answer text (e.g. {"positive": " positive"}), in candidate order. Each split holds the same number of examples
    of every class (train_size and test_size are split evenly; a remainder is dropped). With ``fields`` the template
    fills {name} for each of those columns of ``data`` instead of {text} alone (each cut to ``max_words``).
    """
    where = where or f"task '{name}'"
    check_template(template, where, fields=fields)
    used = placeholders(template, where) if fields is not None else ["text"]
    if not verbalizer:
        raise ContinualError(f"{where}: the verbalizer is empty; map each label to its answer text")
    columns = data.select_columns(used + ["label"]).to_dict()  # plain lists: row access is slow on a Dataset
    absent = sorted({str(lab) for lab in columns["label"]} - {str(k) for k in verbalizer})
    if absent:
        raise ContinualError(f"{where}: label(s) {', '.join(map(repr, absent[:5]))} are absent from the verbalizer "
                             f"({', '.join(map(repr, verbalizer))}); add them or filter the data")
    classes = list(verbalizer)
    verbal = {str(k): v for k, v in verbalizer.items()}
    if len(set(verbal.values())) != len(verbal):
        raise ContinualError(f"{where}: two labels share one answer text in the verbalizer {verbalizer}")
    per_train, per_test = train_size // len(classes), test_size // len(classes)
    if per_train < 1 or per_test < 1:
        raise ContinualError(f"{where}: train_size {train_size} and test_size {test_size} must give each of the "
                             f"{len(classes)} labels at least one example")

    by_class: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    seen = set()
    for *texts, label in zip(*(columns[f] for f in used), columns["label"]):
        short = tuple(shorten("" if t is None else t, max_words) for t in texts)
        if any(short) and short not in seen:  # one copy of each text, so train and test never share one
            seen.add(short)
            by_class[str(label)].append(short)
    rng = random.Random(f"{name}:{seed}")
    train_rows, test_rows = [], []
    for index, label in enumerate(map(str, classes)):
        pool = by_class.get(label, [])
        if len(pool) < per_train + per_test:
            raise ContinualError(f"{where}: label {label!r} has {len(pool)} distinct examples, fewer than the "
                                 f"{per_train + per_test} needed ({per_train} train + {per_test} test per label); "
                                 "lower train_size/test_size")
        pool = sorted(pool)  # the source's order does not matter, only the seed does
        rng.shuffle(pool)
        test_rows += [(t, index) for t in pool[:per_test]]
        train_rows += [(t, index) for t in pool[per_test:per_test + per_train]]
    rng.shuffle(train_rows)
    rng.shuffle(test_rows)

    candidates = [verbal[str(c)] for c in classes]

    def prompt(texts: tuple[str, ...]) -> str:
        return render(template, dict(zip(used, texts)))
    train = Dataset.from_dict({
        "prompt": [prompt(t) for t, _ in train_rows],
        "completion": [candidates[i] for _, i in train_rows],
    })
    test = Dataset.from_dict({
        "prompt": [prompt(t) for t, _ in test_rows],
        "candidates": [candidates] * len(test_rows),
        "label": [i for _, i in test_rows],
    })
    return Task(name=name, train=train, eval={"test": test}, matrix_split="test", kind="choice",
                classes=candidates, description=description or f"{len(classes)} labels, {len(train_rows)} train, "
                                                                 f"{len(test_rows)} test")


INSTRUCTION_TEMPLATE = "Instruction: {prompt}\nResponse:"


def generation_task(name: str, pairs: Dataset, train_size: int, test_size: int, seed: int, description: str = "",
                    template: str = INSTRUCTION_TEMPLATE, max_words: int = 40, where: str | None = None) -> Task:
    """An instruction task: train on (prompt, response), score greedy generations against held-out responses.

    Responses are put on one line (whitespace collapsed) and end with a newline in training, so a generation ends
    at its first newline. ``train_size`` 0 trains on every pair not held out for testing.
    """
    where = where or f"task '{name}'"
    check_template(template, where, "{prompt}")
    rows, seen = [], set()
    columns = pairs.select_columns(["prompt", "response"]).to_dict()
    for prompt, response in zip(columns["prompt"], columns["response"]):
        prompt, response = str(prompt).strip(), shorten(response, max_words)
        if prompt and response and prompt not in seen:
            seen.add(prompt)
            rows.append((prompt, response))
    if len(rows) < test_size + 1:
        raise ContinualError(f"{where}: {len(rows)} distinct prompts, fewer than test_size {test_size} + 1 for "
                             "training; lower test_size")
    rows.sort()
    rng = random.Random(f"{name}:{seed}")
    rng.shuffle(rows)
    test_rows = rows[:test_size]
    train_rows = rows[test_size:test_size + train_size] if train_size else rows[test_size:]

    def prompt_of(p):
        return template.replace("{prompt}", p)
    train = Dataset.from_dict({"prompt": [prompt_of(p) for p, _ in train_rows],
                               "completion": [f" {r}\n" for _, r in train_rows]})
    test = Dataset.from_dict({"prompt": [prompt_of(p) for p, _ in test_rows],
                              "reference": [r for _, r in test_rows]})
    return Task(name=name, train=train, eval={"test": test}, matrix_split="test", kind="generation",
                description=description or f"{len(train_rows)} train, {len(test_rows)} test pairs")


def fit_to_length(stream, tokenizer, max_length: int):
    """Make every training example fit ``max_length`` tokens with its answer: training truncates on the right, so
    a prompt that fills the window would leave no answer token to learn (a NaN loss for a batch of them). Words
    are dropped from the body of such a prompt: its leading lines are kept while they fill at most half the window
    (a benchmark prompt's instruction and options), and words go from the start of the rest (the end holds the
    question and the answer cue); an answer that is itself longer than the window keeps at least half of it. The
    number trimmed is recorded in stream.options."""
    trimmed = 0

    def n_tokens(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    def fit(row):
        nonlocal trimmed
        prompt, completion = row["prompt"], row["completion"]
        n_answer = n_tokens(prompt + completion) - n_tokens(prompt)
        budget = max(max_length - max(n_answer, 1), max_length // 2)
        if n_tokens(prompt) <= budget:
            return {"prompt": prompt}
        lines = prompt.split("\n")
        keep = 0  # leading lines kept whole: while they take at most half the budget and leave a body
        while keep < len(lines) - 1 and n_tokens("\n".join(lines[:keep + 1]) + "\n") <= budget // 2:
            keep += 1
        head = "\n".join(lines[:keep]) + "\n" if keep else ""
        words = "\n".join(lines[keep:]).split(" ")
        lo, hi = 1, len(words) - 1  # the most words to drop; binary search for the fewest that fit
        while lo < hi:
            mid = (lo + hi) // 2
            if n_tokens(head + " ".join(words[mid:])) <= budget:
                hi = mid
            else:
                lo = mid + 1
        trimmed += 1
        return {"prompt": head + " ".join(words[lo:])}
    for task in stream.tasks:
        task.train = task.train.map(fit, load_from_cache_file=False)
        shortest = min((n_tokens(p) for p in task.train["prompt"]), default=0)
        if len(task.train) and shortest >= max_length:  # refused now, before the run directory is touched
            raise ContinualError(f"--max-length {max_length} leaves no answer token in any training example of task "
                                 f"'{task.name}' (its shortest prompt takes {shortest} tokens); raise --max-length")
    stream.options = {**stream.options, "training_prompts_trimmed_to_fit": trimmed}
    return stream


def hold_out_validation(stream, size: int, seed: int):
    """Move ``size`` training examples of each task (a seeded draw) into an evaluation split named "validation",
    scored like the task's others and never trained: settings chosen on it (the learning rate of a sweep) are not
    chosen on the test split they are reported on. A choice example's label is the candidate its completion begins
    with; a generation example's reference is its completion. A task scored on its own training examples (facts: the
    matrix measures what was trained) has no held-out data to take and keeps its training set; the tasks given a
    split and those without are recorded in stream.options."""
    given, kept = [], []
    for task in stream.tasks:
        if task.matrix_split == "train":
            kept.append(task.name)
            continue
        n = len(task.train)
        if size >= n:
            raise ContinualError(f"--validation-size {size} leaves task '{task.name}' no training example (it has {n});"
                                 f" choose at most {n - 1}")
        held = sorted(random.Random(f"validation:{seed}:{task.name}").sample(range(n), size))
        rows = task.train.select(held).to_list()
        task.train = task.train.select(sorted(set(range(n)) - set(held)))
        if task.kind == "generation":
            split = Dataset.from_dict({"prompt": [r["prompt"] for r in rows],
                                       "reference": [r["completion"].strip() for r in rows]})
        else:
            answers = task.answers
            labels = []
            for r in rows:
                label = answer_of(r["completion"], answers)
                if label is None:
                    raise ContinualError(f"task '{task.name}': the completion {r['completion']!r} begins with none "
                                         f"of its candidate answers {answers}, so it cannot be scored as a "
                                         "validation example; use --validation-size 0")
                labels.append(label)
            split = Dataset.from_dict({"prompt": [r["prompt"] for r in rows], "candidates": [answers] * len(rows),
                                       "label": labels})
        task.eval = {**task.eval, "validation": split}
        given.append(task.name)
    stream.options = {**stream.options, "validation_split": {"size": size, "tasks": given,
                                                             "scored_on_training_data": kept}}
    return stream
