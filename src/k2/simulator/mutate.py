"""Mutated venue frames for fuzzing: real messages with one thing wrong, reproducible from a seed.

Every mutation keeps most of a real frame, so it gets past the first checks and exercises the
deep ones: truncation, byte flips, a value of another type, huge, negative or exponent numbers,
NaN and infinities, deep nesting, a missing or an extra field.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# Values a field may be swapped for: other types, and numbers (as JSON numbers and as strings)
# at and past every limit the stores have.
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    [],
    {},
    "",
    "x",
    "[/]",
    2**63,
    2**64,
    2**70,
    -(2**63),
    10**40,
    1.5e300,
    1e-300,
    6.0e4,
    1e-7,
    "0",
    "-1",
    "-0.5",
    "1e5",
    "6.0E+4",
    "1E-7",
    "1E-19",
    "0.0000000000000000001",
    "123456789012345678901234.5",
    "99999999999999999999.999999999999999999",
    "NaN",
    "Infinity",
    "-Infinity",
    "sNaN",
    "1e999999999",
    "9" * 60,
    "9999-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00Z",
    "2010-01-01T00:00:00Z",
    "not a time",
    99999999999999999000,
    253402300799000000,
    -5,
)
# Numbers written into the text itself (json.dumps cannot write these).
RAW_NUMBERS = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-0",
    b"1E-19",
    b"0.00000000000000000001",
    b"123456789012345678901234.5",
    b"1" + b"0" * 5000,
)


class Mutator:
    """Mutations of a set of real frames, deterministic for a seed."""

    def __init__(self, frames: Sequence[bytes], seed: int) -> None:
        self.frames = list(frames)
        self.rng = random.Random(seed)
        self.kinds: tuple[Callable[[bytes], bytes], ...] = (
            self.truncate,
            self.flip_bytes,
            self.swap_value,
            self.swap_value,
            self.swap_value,
            self.raw_number,
            self.deep_nesting,
            self.drop_field,
            self.extra_field,
            self.keep,
        )

    def __iter__(self) -> Iterator[bytes]:
        while True:
            frame = self.rng.choice(self.frames)
            yield self.rng.choice(self.kinds)(frame)

    def take(self, n: int) -> list[bytes]:
        it = iter(self)
        return [next(it) for _ in range(n)]

    # -- byte level ---------------------------------------------------------------------------
    def keep(self, frame: bytes) -> bytes:
        return frame

    def truncate(self, frame: bytes) -> bytes:
        return frame[: self.rng.randrange(len(frame))] if frame else frame

    def flip_bytes(self, frame: bytes) -> bytes:
        data = bytearray(frame)
        for _ in range(self.rng.randint(1, 3)):
            if data:
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return bytes(data)

    def raw_number(self, frame: bytes) -> bytes:
        return self._replace(frame, lambda: "__RAW__").replace(
            b'"__RAW__"', self.rng.choice(RAW_NUMBERS)
        )

    def deep_nesting(self, frame: bytes) -> bytes:
        depth = self.rng.choice((50, 1_500, 10_000))  # msgspec gives up past ~1,000 levels
        return self._replace(frame, lambda: "__DEEP__").replace(
            b'"__DEEP__"', b"[" * depth + b"]" * depth
        )

    # -- JSON level ---------------------------------------------------------------------------
    def swap_value(self, frame: bytes) -> bytes:
        return self._replace(frame, lambda: self.rng.choice(ODD_VALUES))

    def drop_field(self, frame: bytes) -> bytes:
        return self._edit(frame, lambda node, key: node.pop(key))

    def extra_field(self, frame: bytes) -> bytes:
        return self._edit(
            frame, lambda node, key: node.__setitem__(f"extra_{self.rng.randrange(99)}", "x")
        )

    def _replace(self, frame: bytes, value: Callable[[], Any]) -> bytes:
        def swap(node: dict[str, Any] | list[Any], key: Any) -> None:
            node[key] = value()

        return self._edit(frame, swap, lists=True)

    def _edit(self, frame: bytes, change: Callable[[Any, Any], Any], lists: bool = False) -> bytes:
        """Apply `change(container, key)` to one randomly chosen place in the frame's JSON."""
        try:
            tree = json.loads(frame)
        except ValueError:
            return self.flip_bytes(frame)
        places: list[tuple[Any, Any]] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, child in node.items():
                    places.append((node, key))
                    walk(child)
            elif isinstance(node, list):
                for i, child in enumerate(node):
                    if lists:
                        places.append((node, i))
                    walk(child)

        walk(tree)
        if not places:
            return frame
        container, key = self.rng.choice(places)
        if isinstance(container, list) and not lists:
            return frame
        change(container, key)
        return json.dumps(tree, separators=(",", ":")).encode()
