"""Options dataclasses: the one mechanism behind the run config, the benchmark config and every strategy's, stream's
and probe's options.

A field is declared once, with its default, its help text and its bounds::

    @dataclass
    class ReplayOptions(Options):
        ratio: float = option(0.25, "share of each batch taken from the buffer", low=0, high=1)

and everything else follows from that declaration: type coercion of command-line strings ("0.5" -> 0.5,
"true" -> True), validation (type, finiteness, bounds, choices) with one error line naming the key, the
``continual list`` and ``--help`` texts, and the argparse flags of a config dataclass.

Why not ``transformers.HfArgumentParser`` (or trl's ``TrlParser``): a YAML file must sit *under* the flags (a flag
the user typed overrides the file, an untyped flag must not), which needs "not given" to differ from "the default";
``--strategy-option KEY=VALUE`` repeats; our errors are one ``continual: error:`` line; and HfArgumentParser's help
prints each default in Python syntax (``None``, ``True``) after the field's own text.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields

from continual.errors import ContinualError


def option(default=MISSING, help: str = "", *, low=None, high=None, low_open: bool = False, choices=None,
           default_factory=MISSING, shown_default: str | None = None, flag: str | None = None,
           metavar: str | None = None):
    """A dataclass field with its help text and bounds (``low <= value <= high``; ``low_open``: ``low < value``).

    ``shown_default`` replaces the default in help texts (e.g. "the strategy's own" for an unset learning rate);
    ``flag`` and ``metavar`` override the command-line flag's name and value placeholder."""
    metadata = {"help": help, "low": low, "high": high, "low_open": low_open, "choices": choices,
                "shown_default": shown_default, "flag": flag, "metavar": metavar}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_PREFIX = contextvars.ContextVar("options_prefix", default="")  # what goes before a key in messages ("replay.")


@dataclass
class Options:
    """Base of every options dataclass: validates its fields when it is built (directly or with ``build``)."""

    def __post_init__(self):
        validate(self)
        self.check()

    def check(self) -> None:
        """Cross-field rules of a subclass (raise ContinualError); single fields are checked from their metadata."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class NoOptions(Options):
    """This has no options."""


# ----------------------------------------------------------------------------------------------------- types

def field_types(cls) -> dict[str, object]:
    """Each field's resolved type (annotations are strings under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def _base_type(hint):
    """(the scalar type, whether None is allowed) of int | float | bool | str | dict | list[str] | X | None."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        return (kinds[0] if len(kinds) == 1 else hint), type(None) in args
    return (typing.get_origin(hint) or hint), False


def type_name(hint) -> str:
    kind, nullable = _base_type(hint)
    name = getattr(kind, "__name__", str(kind))
    return f"{name} or null" if nullable else name


def coerce(value, hint, key: str):
    """``value`` as the field's type: strings (command line, environment) are parsed, other values must already
    have the type (an int is a float). One ContinualError line names ``key`` otherwise."""
    kind, nullable = _base_type(hint)
    if value is None:
        if nullable:
            return None
        raise ContinualError(f"{key} must be {type_name(hint)}, got null")
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if nullable and text.lower() in ("none", "null", ""):
            return None
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(text)
                return text.lower() in ("true", "1", "yes", "on")
            if kind in (int, float):
                value = kind(text)
            elif kind is list:
                return [part.strip() for part in text.split(",") if part.strip()]
        except ValueError:
            raise ContinualError(f"{key} must be {type_name(hint)}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        raise ContinualError(f"{key} must be a finite number, got {value!r}")
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool), float: lambda v: isinstance(v, float),
          bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str),
          dict: lambda v: isinstance(v, dict), list: lambda v: isinstance(v, list)}.get(kind, lambda v: True)
    if not ok(value):
        raise ContinualError(f"{key} must be {type_name(hint)}, got {value!r}")
    return value


def _check_bounds(value, meta: dict, key: str) -> None:
    if value is None:
        return
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ContinualError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if low is not None and (value <= low if meta.get("low_open") else value < low):
        bound = f"greater than {low}" if meta.get("low_open") else f"at least {low}"
        raise ContinualError(f"{key} must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise ContinualError(f"{key} must be at most {high}, got {value!r}")


def validate(instance, prefix: str | None = None) -> None:
    """Coerce and check every field of an options instance in place (type, finiteness, bounds, choices)."""
    prefix = prefix if prefix is not None else _PREFIX.get()
    hints = field_types(type(instance))
    for f in fields(instance):
        key = f"{prefix}{f.name}"
        value = coerce(getattr(instance, f.name), hints[f.name], key)
        _check_bounds(value, f.metadata, key)
        object.__setattr__(instance, f.name, value)


def build(cls, values: dict | None, prefix: str = "", where: str = ""):
    """``cls(**values)`` with unknown keys refused (listing the known ones) and values coerced from strings.

    ``prefix`` goes before each key in messages ("replay." for strategy options); ``where`` names their origin."""
    values = dict(values or {})
    known = [f.name for f in fields(cls)]
    unknown = [k for k in values if k not in known]
    origin = f"{where}: " if where else ""
    if unknown:
        shown = ", ".join(f"{prefix}{k}" for k in known) or "none"
        raise ContinualError(f"{origin}unknown option(s) {', '.join(f'{prefix}{u}' for u in unknown)}; "
                             f"known: {shown}")
    hints = field_types(cls)
    typed = {k: coerce(v, hints[k], f"{prefix}{k}") for k, v in values.items()}
    token = _PREFIX.set(prefix)  # validation messages name the key as the user wrote it
    try:
        return cls(**typed)
    except TypeError as exc:
        raise ContinualError(f"{origin}{exc}") from None
    finally:
        _PREFIX.reset(token)


def split_namespaced(options: dict, owners: list[str], what: str, example: str) -> dict[str, dict]:
    """{'replay.ratio': 0.5} -> {'replay': {'ratio': 0.5}} for the given owners; a key that names no owner, or has no
    dot, is refused."""
    out: dict[str, dict] = {o: {} for o in owners}
    for key, value in options.items():
        owner, dot, name = str(key).partition(".")
        if not dot or not name:
            raise ContinualError(f"{what} '{key}' must read <name>.<option>, e.g. {example}")
        if owner not in out:
            raise ContinualError(f"{what} '{key}' names none of {', '.join(owners) or 'nothing'}; write "
                                 f"<name>.<option>, e.g. {example}")
        out[owner][name] = value
    return out


# ------------------------------------------------------------------------------------------------- help text

def shown_default(f) -> str:
    """A field's default as the user writes it (true/false, a list with commas, an empty string as none)."""
    if f.metadata.get("shown_default"):
        return f.metadata["shown_default"]
    value = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING
                                                          else None)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value == "" or value == {} or value == []:
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def describe(cls, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, shown default, help) of every field, for ``continual list``."""
    return [(f"{prefix}{f.name}", shown_default(f), f.metadata.get("help", "")) for f in fields(cls)]


# ------------------------------------------------------------------------------------------------ argparse

def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of a config dataclass: ``--batch-size N``, ``--packing/--no-packing``; a dict field is a
    repeatable ``--<flag> KEY=VALUE``. Unset flags stay unset (argparse.SUPPRESS), so a YAML file's value is not
    overwritten by a default; the help shows each default once."""
    hints = field_types(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        kind, _ = _base_type(hints[f.name])
        flag = "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))
        text = f.metadata.get("help", "").replace("%", "%%")
        default = shown_default(f)
        if kind is dict:
            parser.add_argument(flag, dest=f.name, action="append", default=argparse.SUPPRESS,
                                metavar=f.metadata.get("metavar") or "KEY=VALUE", help=f"{text} (repeatable)")
        elif kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"{text} (default: {'on' if default == 'true' else 'off'})")
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS,
                                # "" (the owner's default) is a value, not a choice to show
                                metavar=f.metadata.get("metavar") or ("{" + ",".join(str(c) for c in choices if c != "")
                                                                       + "}"
                                                                       if choices else f.name.upper()),
                                help=f"{text} (default: {default})")


def given(args: argparse.Namespace, cls) -> dict:
    """The flags of ``cls`` the user typed, as raw values (strings; lists of KEY=VALUE for dict fields)."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}


def parse_pairs(pairs: list[str], flag: str, example: str) -> dict:
    """['replay.ratio=0.5', ...] -> {'replay.ratio': '0.5'}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ContinualError(f"{flag} '{pair}' must read name.option=value, e.g. {example}")
        out[key.strip()] = value.strip()
    return out


def merge(from_file: dict, from_flags: dict, pair_flags: dict[str, tuple[str, str]]) -> dict:
    """A config file's values under the flags the user typed; dict fields merge key by key (flags win).
    ``pair_flags`` maps each dict field to (its flag, an example) for the KEY=VALUE parser."""
    merged = dict(from_file)
    for name, value in from_flags.items():
        if name in pair_flags:
            base = merged.get(name) if isinstance(merged.get(name), dict) else {}
            merged[name] = {**base, **parse_pairs(value, *pair_flags[name])}
        else:
            merged[name] = value
    return merged


def read_yaml(path, what: str):
    """A user's YAML file (``what``: "config file", "stream file"), or one ContinualError line naming it and why."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ContinualError(f"{what} '{path}' does not exist") from None
    except IsADirectoryError:
        raise ContinualError(f"{what} '{path}' is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContinualError(f"{what} '{path}' cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ContinualError(f"{what} '{path}' is not valid YAML{at}; fix the syntax") from None


def read_config_file(path: str, cls) -> dict:
    """A YAML mapping of ``cls``'s fields (keys as the flags, with underscores); unknown keys are refused."""
    data = read_yaml(path, "config file")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ContinualError(f"config file '{path}' must be a mapping of option: value, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ContinualError(f"config file '{path}' has unknown option(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
    return data
