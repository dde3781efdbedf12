"""Streams defined in a YAML file (``continual run --stream my_stream.yaml``): your data, your prompts, your labels.

    name: my-topics                        # optional (default: the file name)
    scenario: class-incremental            # task-, domain- or class-incremental
    kind: choice                           # choice (label scoring) or generation (ROUGE-L); per task too
    template: "Text: {text}\\nTopic:"       # must hold {text} (choice) or {prompt} (generation)
    verbalizer: {0: " world", 1: " sports", 2: " business", 3: " science"}   # label -> answer text
    train_size: 200                        # per task; choice splits are balanced across the task's labels
    test_size: 100
    source: news.csv                       # default source for every task
    columns: {text: text, label: label}    # the file's column for each field
    tasks:
      - name: world-sports
        labels: [0, 1]                     # rows with these labels (default: every label of the source)
      - name: business-science
        labels: [2, 3]
        source: hub:fancyzhx/ag_news       # a hub dataset (add split: test, config: name if needed)

Every task key may also be given at the top level as a default. A source is a local csv/jsonl/parquet file
(relative to the YAML file) or ``hub:<dataset id>``. Generation tasks map columns prompt and response.
"""

from __future__ import annotations

from pathlib import Path

from continual.config import read_yaml
from continual.errors import ContinualError
from continual.streams import sources
from continual.streams.build import INSTRUCTION_TEMPLATE, choice_task, generation_task
from continual.streams.task import Stream

TASK_KEYS = {"name", "source", "split", "config", "columns", "template", "verbalizer", "labels", "train_size",
             "test_size", "kind", "max_words"}
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
    data = load_source(spec["source"], spec.get("split", "train"), spec.get("config"), folder, where)
    fields = ("text", "label") if kind == "choice" else ("prompt", "response")
    columns = spec.get("columns") or {}
    if not isinstance(columns, dict):
        raise ContinualError(f"{where}: columns must map {' and '.join(fields)} to the file's column names")
    stray = sorted(set(columns) - set(fields))
    if stray:
        raise ContinualError(f"{where}: columns may map only {', '.join(fields)}, not {', '.join(map(str, stray))}")
    mapped = {f: str(columns.get(f, f)) for f in fields}
    sources.require_columns(data, list(mapped.values()), f"{where}: source '{spec['source']}'")
    data = data.select_columns(list(dict.fromkeys(mapped.values())))
    data = data.map(lambda r: {f: r[c] for f, c in mapped.items()}, remove_columns=data.column_names)
    train_size = _positive(spec.get("train_size", 200 if kind == "choice" else 0), "train_size", where)
    test_size = _positive(spec.get("test_size", 100 if kind == "choice" else 25), "test_size", where)
    if len(data) == 0:
        raise ContinualError(f"{where}: source '{spec['source']}' gives no rows")

    if kind == "generation":
        template = spec.get("template", INSTRUCTION_TEMPLATE)
        if not isinstance(template, str):
            raise ContinualError(f"{where}: template must be a string")
        return generation_task(name, data, train_size, test_size, seed, template=template,
                               max_words=_positive(spec.get("max_words", 40), "max_words", where), where=where)

    verbalizer = spec.get("verbalizer")
    if not isinstance(verbalizer, dict) or not verbalizer:
        raise ContinualError(f"{where}: a choice task needs a verbalizer mapping each label to its answer text, "
                             "e.g. {positive: ' positive', negative: ' negative'}")
    if not all(isinstance(v, str) and v.strip() for v in verbalizer.values()):
        raise ContinualError(f"{where}: every verbalizer answer must be a non-empty string")
    verbalizer = {str(k): v for k, v in verbalizer.items()}
    data = data.map(lambda r: {"label": str(r["label"])})  # 0 in a csv and 0 in YAML are the same label
    labels = spec.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not labels:
            raise ContinualError(f"{where}: labels must be a non-empty list of the source's label values")
        keep = [str(x) for x in labels]
        absent = [x for x in keep if x not in verbalizer]
        if absent:
            raise ContinualError(f"{where}: label(s) {', '.join(map(repr, absent))} are absent from the verbalizer")
        data = data.filter(lambda r: r["label"] in keep)
        if len(data) == 0:
            raise ContinualError(f"{where}: no rows of source '{spec['source']}' have label(s) {', '.join(keep)}")
        verbalizer = {k: verbalizer[k] for k in keep}
    else:
        present = set(data["label"])
        verbalizer = {k: v for k, v in verbalizer.items() if k in present} or verbalizer
    template = spec.get("template", "Text: {text}\nLabel:")
    if not isinstance(template, str):
        raise ContinualError(f"{where}: template must be a string")
    return choice_task(name, data, verbalizer, template, train_size, test_size, seed,
                       max_words=_positive(spec.get("max_words", 32), "max_words", where), where=where)


def load_source(source, split: str, config, folder: Path, where: str):
    if not isinstance(source, str) or not source.strip():
        raise ContinualError(f"{where}: source must be a file path or hub:<dataset id>")
    path = Path(source)
    try:
        if source.startswith("hub:"):
            return sources.load_hub(source[4:], split, config)
        return sources.load_local(path if path.is_absolute() else folder / path)
    except ContinualError as exc:
        raise ContinualError(f"{where}: {exc}") from None
