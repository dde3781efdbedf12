"""Streams defined in a YAML file (``continual run --stream my_stream.yaml``): your data, your prompts, your labels.

    name: my-topics                        # optional (default: the file name)
    scenario: class-incremental            # task-, domain- or class-incremental
    kind: choice                           # choice (label scoring) or generation (ROUGE-L); per task too
    template: "Text: {text}\\nTopic:"       # {text} (choice) or {prompt} (generation), and/or {any column}
    verbalizer: {0: " world", 1: " sports", 2: " business", 3: " science"}   # label -> answer text
    label_names: {0: World, 1: Sports}     # ids -> names for id-only data (a hub ClassLabel's names by default)
    train_size: 200                        # per task; choice splits are balanced across the task's labels
    test_size: 100
    source: news.csv                       # default source for every task
    columns: {text: text, label: label}    # the file's column for each field; {text: [title, body]} joins
    separator: " "                         # between joined columns
    header: true                           # false for a headerless csv, with names: [label, title, body]
    tasks:
      - name: world-sports
        labels: [0, 1]                     # rows with these labels (default: every label of the source)
      - name: business-science
        labels: [2, 3]
        source: hub:fancyzhx/ag_news       # a hub dataset (add split: test, config: name if needed)

Every task key may also be given at the top level as a default. A source is a local csv/jsonl/parquet file
(relative to the YAML file) or ``hub:<dataset id>``. Generation tasks map columns prompt and response.
Labels compare after one normalisation (label_key): 1 in a csv, 1 or "1" in YAML are one label; so are True and
"true".
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset

from continual.config import read_yaml
from continual.errors import ContinualError
from continual.streams import sources
from continual.streams.build import INSTRUCTION_TEMPLATE, choice_task, generation_task, placeholders, render
from continual.streams.task import Stream

log = logging.getLogger("continual")

TASK_KEYS = {"name", "source", "split", "config", "columns", "template", "verbalizer", "labels", "train_size",
             "test_size", "kind", "max_words", "label_names", "separator", "header", "names"}
STREAM_KEYS = {"name", "scenario", "description", "tasks"} | (TASK_KEYS - {"name"})
SCENARIOS = ("task-incremental", "domain-incremental", "class-incremental")


def is_stream_file(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml"))


def read_stream_file(path: str | Path) -> dict:
    path = Path(path)
    data = read_yaml(path, "stream file")
    if not isinstance(data, dict):
        raise ContinualError(f"stream file '{path}' must be a mapping with a 'tasks' list")
    return data


def custom_stream(path: str | Path, seed: int = 0) -> Stream:
    path = Path(path)
    spec = read_stream_file(path)
    unknown = sorted(map(str, set(spec) - STREAM_KEYS))
    if unknown:
        raise ContinualError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(STREAM_KEYS))}")
    scenario = spec.get("scenario", "task-incremental")
    if scenario not in SCENARIOS:
        raise ContinualError(f"{path}: scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    task_specs = spec.get("tasks")
    if not isinstance(task_specs, list) or not task_specs:
        raise ContinualError(f"{path}: 'tasks' must be a non-empty list of task mappings")
    defaults = {k: v for k, v in spec.items() if k in TASK_KEYS}
    tasks, names = [], []
    for index, task_spec in enumerate(task_specs):
        where = f"{path}: tasks[{index}]"
        if not isinstance(task_spec, dict):
            raise ContinualError(f"{where} must be a mapping (name, source, columns, ...)")
        unknown = sorted(map(str, set(task_spec) - TASK_KEYS))
        if unknown:
            raise ContinualError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TASK_KEYS))}")
        task = build_task({**defaults, **task_spec}, path.parent, seed, where)
        if task.name in names:
            raise ContinualError(f"{where}: task name '{task.name}' is used twice")
        names.append(task.name)
        tasks.append(task)
    if scenario != "class-incremental":
        for task in tasks:
            task.classes = []
    return Stream(str(spec.get("name") or path.stem), tasks, scenario=scenario,
                  description=str(spec.get("description", f"custom stream from {path}")),
                  options={"stream_file": str(path), "tasks": names})


def _positive(value, field: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContinualError(f"{where}: {field} must be a non-negative integer, got {value!r}")
    return value


def label_key(value) -> str:
    """One spelling for a label however it was written: 1, 1.0 and "1" are "1"; True, "True" and "true" are
    "true" (a csv column of ids reads as integers, a YAML key may be either)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text.lower() if text.lower() in ("true", "false") else text


def _blank_rows(table: dict[str, list[str]], fields: list[str], named: list[str], source: str) -> set[int]:
    """Rows with a blank (empty or missing) text, prompt or response — or, for a template of named columns only,
    with every one of them blank — are skipped, counted in one warning naming the file's rows: never trained or
    scored as an empty text (or as the text "None")."""
    n = len(next(iter(table.values()), []))
    if fields:
        blank = [i for i in range(n) if any(not table[f][i].strip() for f in fields)]
    else:
        blank = [i for i in range(n) if all(not table[f][i].strip() for f in named)]
    if blank:
        shown = ", ".join(str(i + 1) for i in blank[:5]) + (" ..." if len(blank) > 5 else "")
        log.warning("%s: skipped %d row(s) with a blank %s (data rows %s)", source, len(blank),
                    " or ".join(fields or named), shown)
    return set(blank)


def _joined(values, separator: str) -> str:
    parts = [str(v).strip() for v in values if v is not None and str(v).strip()]
    return separator.join(parts)


def _column_list(value, field: str, where: str) -> list[str]:
    """A field's column(s): a name, or a list of names whose values are joined."""
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, (str, int)) and not isinstance(n, bool) and str(n).strip() for n in names):
        raise ContinualError(f"{where}: columns.{field} must be a column name or a list of them, got {value!r}")
    return [str(n) for n in names]


def _label_names(spec: dict, data, label_column: str, where: str) -> dict[str, str]:
    """{label id: name}: the task's label_names, else the names of a ClassLabel column (hub datasets), else {}."""
    from datasets import ClassLabel
    given = spec.get("label_names")
    if given is not None:
        if not isinstance(given, dict) or not given or not all(isinstance(v, (str, int)) for v in given.values()):
            raise ContinualError(f"{where}: label_names must map each label id of the data to its name, e.g. "
                                 "{1: World, 2: Sports}")
        return {label_key(k): str(v).strip() for k, v in given.items()}
    feature = data.features.get(label_column)
    if isinstance(feature, ClassLabel):
        return {str(i): name for i, name in enumerate(feature.names)}
    return {}


def _keys(values) -> str:
    return ", ".join(map(repr, values))


BOOLEAN_HINT = ("; YAML reads unquoted yes/no/on/off/true/false as booleans: quote labels that are words")


def build_task(spec: dict, folder: Path, seed: int, where: str):
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ContinualError(f"{where}: every task needs a name")
    where = f"{where} ({name})"
    kind = spec.get("kind", "choice")
    if kind not in ("choice", "generation"):
        raise ContinualError(f"{where}: kind must be 'choice' or 'generation', got {kind!r}")
    if "source" not in spec:
        raise ContinualError(f"{where}: no source; give a csv/jsonl/parquet file or hub:<dataset id>")
    header, names = spec.get("header", True), spec.get("names")
    if not isinstance(header, bool):
        raise ContinualError(f"{where}: header must be true or false, got {header!r}")
    if names is not None and (not isinstance(names, list) or not names or
                              not all(isinstance(n, str) and n.strip() for n in names)):
        raise ContinualError(f"{where}: names must be a list of column names, one per column of the file")
    data = load_source(spec["source"], spec.get("split", "train"), spec.get("config"), folder, where, header, names)
    source = f"{where}: source '{spec['source']}'"
    fields = ("text", "label") if kind == "choice" else ("prompt", "response")
    columns = spec.get("columns") or {}
    if not isinstance(columns, dict):
        raise ContinualError(f"{where}: columns must map {' and '.join(fields)} to the file's column names")
    stray = sorted(set(map(str, columns)) - set(fields))
    if stray:
        raise ContinualError(f"{where}: columns may map only {', '.join(fields)}, not {', '.join(stray)}")
    separator = spec.get("separator", " ")
    if not isinstance(separator, str):
        raise ContinualError(f"{where}: separator (between joined columns) must be a string, got {separator!r}")
    train_size = _positive(spec.get("train_size", 200 if kind == "choice" else 0), "train_size", where)
    test_size = _positive(spec.get("test_size", 100 if kind == "choice" else 25), "test_size", where)
    template = spec.get("template", INSTRUCTION_TEMPLATE if kind == "generation" else "Text: {text}\nLabel:")
    if not isinstance(template, str):
        raise ContinualError(f"{where}: template must be a string")
    field = fields[0]  # the template's own placeholder: {text} or {prompt}; any other names a column of the file
    if not placeholders(template, where):
        columns_named = ", ".join("{" + str(c) + "}" for c in data.column_names[:8])
        raise ContinualError(f"{where}: prompt template {template!r} lacks the placeholder {{{field}}} (or a column "
                             f"of the file in braces: {columns_named})")
    named = [n for n in placeholders(template, where) if n != field]
    if named:
        sources.require_columns(data, named, f"{source} (named in the template)")
    need_field = f"{{{field}}}" in template or not named
    mapped = {f: _column_list(columns.get(f, f), f, where) for f in fields if f != field or need_field}
    if kind == "choice" and mapped["label"][0] in named:
        raise ContinualError(f"{where}: prompt template {template!r} shows the label column "
                             f"{{{mapped['label'][0]}}}, the answer the model is to give; template other columns")
    if len(mapped.get(fields[1], [])) > 1 and kind == "choice":
        raise ContinualError(f"{where}: columns.label must be one column, got {columns['label']!r}")
    sources.require_columns(data, list(dict.fromkeys(c for cs in mapped.values() for c in cs)), source)
    wanted = list(dict.fromkeys([c for cs in mapped.values() for c in cs] + named))
    rows = data.select_columns(wanted).to_dict()  # plain lists: labels keep their type only until compared
    table = {f: [_joined(vs, separator) for vs in zip(*(rows[c] for c in cs))] for f, cs in mapped.items()
             if f != fields[1] or kind == "generation"}
    table |= {n: ["" if v is None else str(v) for v in rows[n]] for n in named}
    if not len(data):
        raise ContinualError(f"{source} gives no rows")
    blank = _blank_rows(table, [f for f in mapped if f != "label"], named, source)
    if blank:
        table = {f: [v for i, v in enumerate(values) if i not in blank] for f, values in table.items()}
        rows = {c: [v for i, v in enumerate(values) if i not in blank] for c, values in rows.items()}

    if kind == "generation":
        if named:  # the columns are filled in here; the template left for the task is the whole prompt
            fill = named + ([field] if need_field else [])
            count = len(table[named[0]])  # rows left after the blank ones are skipped
            table["prompt"] = [render(template, {n: table[n][i] for n in fill}) for i in range(count)]
            template = "{prompt}"
        pairs = Dataset.from_dict({"prompt": table["prompt"], "response": table["response"]})
        return generation_task(name, pairs, train_size, test_size, seed, template=template,
                               max_words=_positive(spec.get("max_words", 40), "max_words", where), where=where)

    label_names = _label_names(spec, data, mapped["label"][0], where)

    def canon(value) -> str:
        key = label_key(value)
        return label_names.get(key, key)
    raw_verbalizer = spec.get("verbalizer")
    if raw_verbalizer is None and label_names:  # the data's own names are the answers
        raw_verbalizer = {n: f" {n}" for n in label_names.values()}
    if not isinstance(raw_verbalizer, dict) or not raw_verbalizer:
        raise ContinualError(f"{where}: a choice task needs a verbalizer mapping each label to its answer text, "
                             "e.g. {positive: ' positive', negative: ' negative'} (or label_names for id labels)")
    if not all(isinstance(v, str) and v.strip() for v in raw_verbalizer.values()):
        raise ContinualError(f"{where}: every verbalizer answer must be a non-empty string")
    verbalizer: dict[str, str] = {}
    for key, answer in raw_verbalizer.items():
        if canon(key) in verbalizer:
            same = [k for k in raw_verbalizer if canon(k) == canon(key)]
            raise ContinualError(f"{where}: verbalizer keys {_keys(same)} are the same label")
        verbalizer[canon(key)] = answer
    hint = BOOLEAN_HINT if any(isinstance(k, bool) for k in raw_verbalizer) else ""
    labels_column = rows[mapped["label"][0]]
    kept = [i for i, v in enumerate(labels_column) if v is not None and label_key(v) != ""]  # unlabelled rows
    table = {f: [values[i] for i in kept] for f, values in table.items()}
    table["label"] = [canon(labels_column[i]) for i in kept]
    present = list(dict.fromkeys(table["label"]))
    labels = spec.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not labels:
            raise ContinualError(f"{where}: labels must be a non-empty list of the source's label values")
        keep = list(dict.fromkeys(canon(x) for x in labels))
        hint = hint or (BOOLEAN_HINT if any(isinstance(x, bool) for x in labels) else "")
        absent = [x for x in keep if x not in verbalizer]
        if absent:
            raise ContinualError(f"{where}: label(s) {_keys(absent)} are absent from the verbalizer, whose keys are "
                                 f"{_keys(verbalizer)}{hint}")
        wanted = set(keep)
        chosen = [i for i, lab in enumerate(table["label"]) if lab in wanted]
        if not chosen:
            raise ContinualError(f"{source} has no rows with label(s) {_keys(keep)}; its labels are "
                                 f"{_keys(sorted(present)[:12])}{hint}")
        table = {f: [values[i] for i in chosen] for f, values in table.items()}
        verbalizer = {k: verbalizer[k] for k in keep}
    else:
        verbalizer = {k: v for k, v in verbalizer.items() if k in set(present)} or verbalizer
    absent = [x for x in dict.fromkeys(table["label"]) if x not in verbalizer]
    if absent:
        raise ContinualError(f"{where}: label(s) {_keys(sorted(absent)[:5])} of the data are absent from the "
                             f"verbalizer, whose keys are {_keys(verbalizer)}; add them or pick labels with labels: "
                             f"[...]{hint}")
    placeheld = ([field] if need_field else []) + named
    return choice_task(name, Dataset.from_dict(table), verbalizer, template, train_size, test_size, seed,
                       max_words=_positive(spec.get("max_words", 32), "max_words", where), where=where,
                       fields=placeheld)


def load_source(source, split: str, config, folder: Path, where: str, header: bool = True,
                names: list[str] | None = None):
    if not isinstance(source, str) or not source.strip():
        raise ContinualError(f"{where}: source must be a file path or hub:<dataset id>")
    path = Path(source)
    try:
        if source.startswith("hub:"):
            if not header or names:
                raise ContinualError("header and names apply to csv files only, not to a hub dataset")
            return sources.load_hub(source[4:], split, config)
        return sources.load_local(path if path.is_absolute() else folder / path, header, names)
    except ContinualError as exc:
        raise ContinualError(f"{where}: {exc}") from None
