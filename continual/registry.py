"""Name -> implementation tables for strategies, streams and probes (lm-evaluation-harness style): built-ins
register themselves where they are defined, a user's own register with a call or are named ``module.path:Name``
on the command line (imported on demand, no change to the package)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from continual.errors import ContinualError


@dataclass
class Entry:
    name: str
    value: Any  # a class (strategies, probes) or a stream spec
    description: str


class Registry:
    def __init__(self, what: str, check: Callable[[Any], bool], expected: str):
        self.what, self.check, self.expected = what, check, expected  # e.g. "strategy", issubclass(.., Strategy)
        self.entries: dict[str, Entry] = {}

    def register(self, name: str, value, description: str = "") -> None:
        if not name or not isinstance(name, str) or any(c in name for c in ",+:= "):
            raise ContinualError(f"register: {self.what} name {name!r} must be a non-empty word without , + : = "
                                 "or spaces")
        if not self.check(value):
            raise ContinualError(f"register: {value!r} is not {self.expected}")
        text = description or ((getattr(value, "__doc__", "") or "").strip().splitlines() or [""])[0]
        self.entries[name] = Entry(name, value, text)

    def __contains__(self, name) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)

    def names(self) -> list[str]:
        return list(self.entries)

    def resolve(self, name: str) -> Entry:
        """A registered entry, or ``module.path:Name`` imported (a module may also register Name when imported)."""
        if name in self.entries:
            return self.entries[name]
        if ":" in name:
            module, _, attr = name.partition(":")
            try:
                imported = importlib.import_module(module)
            except ImportError as exc:
                raise ContinualError(f"cannot import {self.what} '{name}': {exc}; give module.path:Name on "
                                     "PYTHONPATH") from None
            if attr in self.entries:  # the module registered it on import
                return self.entries[attr]
            value = getattr(imported, attr, None)
            if value is None:
                raise ContinualError(f"cannot import {self.what} '{name}': module '{module}' has no '{attr}'")
            if not self.check(value):
                raise ContinualError(f"'{name}' is not {self.expected}")
            own = vars(value).get("name") if isinstance(value, type) else getattr(value, "name", None)
            return Entry(own if isinstance(own, str) and own else attr, value, "")
        raise ContinualError(f"unknown {self.what} '{name}'; choose from: {', '.join(self.entries)} (see "
                             f"`continual list`), or give module.path:Name")
