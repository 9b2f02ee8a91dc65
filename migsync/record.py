"""The base of the core's plain data classes: what dataclasses gave them, without its import.

`import dataclasses` pulls in inspect, ast, dis and tokenize (~10 ms), and every dataclass
is built by generated code at import time (~0.5 ms each): a Prolog or a health check pays
that on every run. These classes spell out ``__slots__`` and ``__init__`` themselves; this
base adds value equality, a readable repr and ``as_dict`` (the fields, as asdict gave).
"""
from __future__ import annotations


class Record:
    __slots__ = ()
    __hash__ = None  # mutable, compared by value: unhashable, as an eq dataclass is

    def as_dict(self) -> dict:
        """The fields in order (values as they are: the records here hold plain values).
        Slots named with a leading underscore are caches, not fields."""
        return {n: getattr(self, n) for n in self.__slots__ if n[0] != "_"}

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__ if n[0] != "_")

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__ if n[0] != "_")
        return f"{self.__class__.__name__}({inner})"
