"""Tokenizing IMAP responses into nested lists, and writing them back (pure).

Used by the response parsers of `mailsvc.imap.wire` (bounded nesting for what a
server sends) and by the sync, which stores a BODYSTRUCTURE as text (`to_sexpr`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

_NUMBER = re.compile(r"[0-9]+")
_ATOM_END = set(b' ()[]{}"\r\n')

MAX_NESTING = 200
"""Parenthesized lists nested deeper than this are skipped, contents and all. No
answer mailsvc reads needs more (a BODYSTRUCTURE is read 30 levels deep, see
`mailsvc.mime.parse.MAX_DEPTH`); a line of a million `(` would otherwise cost a list
object, 60-odd bytes, per byte of the line."""


def tokenize(
    segments: Sequence[bytes | bytearray], *, max_nesting: int | None = MAX_NESTING
) -> list[object]:
    """Tokenize text lines and literal payloads into nested lists.

    Atoms become `str`, quoted strings `str`, literals stay the `bytearray` they
    arrived in (a 25 MB message body is not copied here), NIL `None`,
    parenthesized lists `list`. A `BODY[...]`-style atom keeps its bracket section as
    part of the atom (`"BODY[1.2]"`), which is what callers match on. Lists below
    `max_nesting` levels are left out.
    """
    tokenizer = Tokenizer(max_nesting=max_nesting)
    for segment in segments:
        tokenizer.feed(segment)
    return tokenizer.root


class Tokenizer:
    """`tokenize`, fed one segment at a time; `depth` is how many lists are open."""

    def __init__(self, *, max_nesting: int | None = MAX_NESTING) -> None:
        self.root: list[object] = []
        self._stack: list[list[object]] = [self.root]
        # Lists opened below `max_nesting`: counted to find their end, never built.
        self._skipped = 0
        self._max_stack = float("inf") if max_nesting is None else max_nesting

    @property
    def depth(self) -> int:
        return len(self._stack) - 1 + self._skipped

    def feed(self, segment: bytes | bytearray) -> None:
        stack = self._stack
        if isinstance(segment, bytearray):
            if not self._skipped:
                stack[-1].append(segment)
            return
        data = bytes(segment)
        length = len(data)
        i = 0
        while i < length:
            byte = data[i]
            if self._skipped and byte not in (0x28, 0x29, 0x22):
                i += 1  # inside a skipped list: only its end matters (and quotes, below)
            elif byte in (0x20, 0x0D, 0x0A):
                i += 1
            elif byte == 0x28:  # (
                if self._skipped or len(stack) > self._max_stack:
                    self._skipped += 1
                else:
                    child: list[object] = []
                    stack[-1].append(child)
                    stack.append(child)
                i += 1
            elif byte == 0x29:  # )
                if self._skipped:
                    self._skipped -= 1
                elif len(stack) > 1:
                    stack.pop()
                i += 1
            elif byte == 0x22 and self._skipped:  # a skipped quoted string: find its end
                i += 1
                while i < length and data[i] != 0x22:
                    i += 2 if data[i] == 0x5C else 1
                i += 1
            elif byte == 0x22:  # "
                i += 1
                out = bytearray()
                while i < length and data[i] != 0x22:
                    if data[i] == 0x5C and i + 1 < length:  # backslash escape
                        i += 1
                    out.append(data[i])
                    i += 1
                i += 1
                stack[-1].append(out.decode("utf-8", errors="replace"))
            elif byte == 0x7B:  # {n} announces the literal that follows as its own segment
                end = data.find(b"}", i)
                i = length if end < 0 else end + 1
            else:
                start = i
                depth = 0
                while i < length:
                    current = data[i]
                    if current == 0x5B:  # [ ... ] belongs to the atom (BODY[HEADER.FIELDS (A B)])
                        depth += 1
                    elif current == 0x5D:
                        depth -= 1
                    elif depth <= 0 and current in _ATOM_END:
                        break
                    i += 1
                atom = data[start:i].decode("utf-8", errors="replace")
                stack[-1].append(None if atom.upper() == "NIL" else atom)


def tokens(segments: Sequence[bytes | bytearray]) -> list[object]:
    """Public access to the tokenizer (BODYSTRUCTURE trees, tests), at any depth:
    the parsers of server answers above stop at `MAX_NESTING`."""
    return tokenize(segments, max_nesting=None)


_END = object()


def to_sexpr(value: object) -> str:
    """Render tokens back as IMAP text (for BODYSTRUCTURE handed to the MIME layer).

    Without recursion: a server may nest lists deeper than Python's recursion limit.
    """
    parts: list[str] = []
    # The items still to render of each list being rendered, innermost last.
    open_lists: list[Iterator[object]] = [iter((value,))]
    first_in_list = True
    while open_lists:
        item = next(open_lists[-1], _END)
        if item is _END:
            open_lists.pop()
            if open_lists:  # the outermost iterator holds `value`, not a list
                parts.append(")")
            first_in_list = False
            continue
        if not first_in_list:
            parts.append(" ")
        if isinstance(item, list):
            parts.append("(")
            open_lists.append(iter(item))
            first_in_list = True
        else:
            parts.append(_sexpr_atom(item))
            first_in_list = False
    return "".join(parts)


def _sexpr_atom(value: object) -> str:
    if value is None:
        return "NIL"
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", errors="replace")
    text = str(value)
    if _NUMBER.fullmatch(text):
        return text
    # Every BODYSTRUCTURE field other than numbers is a string, so quoting is exact.
    return (
        '"'
        + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
        + '"'
    )
