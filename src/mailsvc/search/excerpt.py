"""Highlight excerpts: the words of a body around a search's matches. Pure.

Built in Python from the start of the body the page's rows bring along, instead of
PostgreSQL's `ts_headline`, which re-parsed each body for every row and was most of
a search's time (bench/search.py). The words are those of `search.words`, so a body
word is marked exactly when the search would match it.

The excerpt is up to `MAX_FRAGMENTS` windows of `FRAGMENT_WORDS` words, each chosen
around matches (the one holding the most different matched words first), joined by
" … " in text order. The text is HTML-escaped, its whitespace collapsed, and each run
of matched characters wrapped in `<mark>…</mark>`.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from mailsvc.search.words import ASCII_RUN, MAX_WORD_BYTES, word_spans

EXCERPT_SOURCE_CHARS = 2_000
"""How much of the body an excerpt is taken from; matches further in get none."""
FRAGMENT_WORDS = 30
MAX_FRAGMENTS = 2
FRAGMENT_SEPARATOR = " … "
# Words of context kept before a fragment's first match.
_CONTEXT_BEFORE = FRAGMENT_WORDS // 3

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class _Words:
    """The words of an excerpt's source: where each lies, and which are matches."""

    starts: Sequence[int]
    stops: Sequence[int]
    word: Callable[[int], str]
    """The word at an index, as `search.words` makes it."""
    matched: list[int]
    """Indexes of the words that are among the searched ones, in text order."""


def excerpt(text: str, words: Collection[str]) -> str | None:
    """The excerpt of `text` (its first `EXCERPT_SOURCE_CHARS` characters) around the
    occurrences of `words`, or None when none of them occurs there.

    `words` are words as `search.words` makes them (lower-cased, CJK bigrams).
    """
    source = text[:EXCERPT_SOURCE_CHARS]
    if _none_can_occur(source, words):
        return None
    layout = (_ascii_words(source, words) if source.isascii() else None) or _split_words(
        source, words
    )
    if not layout.matched:
        return None
    starts = _fragment_starts(layout)
    return FRAGMENT_SEPARATOR.join(_fragment(text, layout, start, words) for start in starts)


def _none_can_occur(source: str, words: Collection[str]) -> bool:
    """Whether none of `words` can be a word of `source`, known without splitting it.

    In NFKC-normal text every word is the case-folded form of a piece of it, so a word
    that is no substring of the case-folded text cannot occur; the search matched
    elsewhere (subject, names). Text that normalization would reshape is split.
    """
    if not (source.isascii() or unicodedata.is_normalized("NFKC", source)):
        return False
    folded = source.casefold()
    return not any(word in folded for word in words)


def _split_words(source: str, words: Collection[str]) -> _Words:
    """Any text: every word made by `search.words`, each compared in Python."""
    spans = word_spans(source)
    return _Words(
        starts=[start for _, start, _ in spans],
        stops=[stop for _, _, stop in spans],
        word=lambda index: spans[index][0],
        matched=[index for index, span in enumerate(spans) if span[0] in words],
    )


def _ascii_words(source: str, words: Collection[str]) -> _Words | None:
    """ASCII text, where a word is a run of `[A-Za-z0-9]` lower-cased: the matches are
    found by one regular expression and words are lower-cased only where an excerpt
    shows them (most of an excerpt's cost was comparing every word in Python). None
    when a run is too long to be a word (`_split_words` then drops it, as indexing did).
    """
    parts = ASCII_RUN.split(source)
    runs = parts[1::2]
    if max(map(len, runs), default=0) > MAX_WORD_BYTES:
        return None
    ends = list(itertools.accumulate(map(len, parts)))
    starts, stops = ends[0:-1:2], ends[1::2]
    # A word with other characters cannot be one of these runs.
    wanted = frozenset(word for word in words if word.isascii() and word.isalnum())
    matched = []
    if wanted:
        matched = [
            bisect_left(starts, found.start()) for found in _matcher(wanted).finditer(source)
        ]
    return _Words(
        starts=starts, stops=stops, word=lambda index: runs[index].lower(), matched=matched
    )


@functools.lru_cache(maxsize=64)
def _matcher(words: frozenset[str]) -> re.Pattern[str]:
    """Whole runs equal to one of `words`, in any case (cached: a page's excerpts all
    look for the same words)."""
    alternatives = "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
    return re.compile(
        rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE | re.ASCII
    )


def _fragment_starts(layout: _Words) -> list[int]:
    """Where each fragment starts (an index into the words), in text order."""
    matched = layout.matched
    matched_words = [layout.word(index) for index in matched]
    last_start = max(len(layout.starts) - FRAGMENT_WORDS, 0)
    candidates = sorted({min(max(index - _CONTEXT_BEFORE, 0), last_start) for index in matched})
    # The matched words of the fragment starting at each candidate, repeats included.
    inside = {
        start: matched_words[
            bisect_left(matched, start) : bisect_left(matched, start + FRAGMENT_WORDS)
        ]
        for start in candidates
    }
    chosen: list[int] = []
    covered: set[str] = set()
    while len(chosen) < MAX_FRAGMENTS:
        free = [
            start
            for start in candidates
            if all(abs(start - other) >= FRAGMENT_WORDS for other in chosen)
        ]
        if not free:
            break
        # New words first, then more matches, then the earlier window.
        best = max(
            free, key=lambda start: (len(set(inside[start]) - covered), len(inside[start]), -start)
        )
        chosen.append(best)
        covered |= set(inside[best])
    return sorted(chosen)


def _fragment(text: str, layout: _Words, first: int, words: Collection[str]) -> str:
    """`text` from the fragment's first word to its last, matches marked."""
    last = min(first + FRAGMENT_WORDS, len(layout.starts)) - 1
    # Matched character ranges, merged where they overlap or touch (CJK bigrams
    # overlap: 会议 and 议通 mark 会议通 once).
    marks: list[tuple[int, int]] = []
    for index in range(first, last + 1):
        if layout.word(index) not in words:
            continue
        start, end = layout.starts[index], layout.stops[index]
        if marks and start <= marks[-1][1]:
            marks[-1] = (marks[-1][0], max(marks[-1][1], end))
        else:
            marks.append((start, end))
    pieces: list[str] = []
    position = layout.starts[first]
    for start, end in marks:
        pieces += [_escaped(text[position:start]), "<mark>", _escaped(text[start:end]), "</mark>"]
        position = end
    pieces.append(_escaped(text[position : layout.stops[last]]))
    return "".join(pieces)


def _escaped(text: str) -> str:
    collapsed = _WHITESPACE.sub(" ", text)
    return collapsed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
