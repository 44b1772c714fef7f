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

import re
import unicodedata
from collections.abc import Collection, Sequence

from mailsvc.search.words import WordSpan, word_spans

EXCERPT_SOURCE_CHARS = 2_000
"""How much of the body an excerpt is taken from; matches further in get none."""
FRAGMENT_WORDS = 30
MAX_FRAGMENTS = 2
FRAGMENT_SEPARATOR = " … "
# Words of context kept before a fragment's first match.
_CONTEXT_BEFORE = FRAGMENT_WORDS // 3

_WHITESPACE = re.compile(r"\s+")


def excerpt(text: str, words: Collection[str]) -> str | None:
    """The excerpt of `text` (its first `EXCERPT_SOURCE_CHARS` characters) around the
    occurrences of `words`, or None when none of them occurs there.

    `words` are words as `search.words` makes them (lower-cased, CJK bigrams).
    """
    source = text[:EXCERPT_SOURCE_CHARS]
    if _none_can_occur(source, words):
        return None
    spans = word_spans(source)
    matched = [index for index, (word, _, _) in enumerate(spans) if word in words]
    if not matched:
        return None
    starts = _fragment_starts(spans, matched)
    return FRAGMENT_SEPARATOR.join(
        _fragment(text, spans[start : start + FRAGMENT_WORDS], words) for start in starts
    )


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


def _fragment_starts(spans: Sequence[WordSpan], matched: Sequence[int]) -> list[int]:
    """Where each fragment starts (an index into `spans`), in text order."""
    last_start = max(len(spans) - FRAGMENT_WORDS, 0)
    candidates = sorted({min(max(index - _CONTEXT_BEFORE, 0), last_start) for index in matched})
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
        inside = {start: _matched_words(spans, matched, start) for start in free}
        # New words first, then more matches, then the earlier window.
        best = max(
            free, key=lambda start: (len(set(inside[start]) - covered), len(inside[start]), -start)
        )
        chosen.append(best)
        covered |= set(inside[best])
    return sorted(chosen)


def _matched_words(spans: Sequence[WordSpan], matched: Sequence[int], start: int) -> list[str]:
    """The matched words of the fragment starting at `start`, repeats included."""
    return [spans[index][0] for index in matched if start <= index < start + FRAGMENT_WORDS]


def _fragment(text: str, spans: Sequence[WordSpan], words: Collection[str]) -> str:
    """`text` from the first span's start to the last one's end, matches marked."""
    # Matched character ranges, merged where they overlap or touch (CJK bigrams
    # overlap: 会议 and 议通 mark 会议通 once).
    marks: list[tuple[int, int]] = []
    for word, start, end in spans:
        if word not in words:
            continue
        if marks and start <= marks[-1][1]:
            marks[-1] = (marks[-1][0], max(marks[-1][1], end))
        else:
            marks.append((start, end))
    pieces: list[str] = []
    position = spans[0][1]
    for start, end in marks:
        pieces += [_escaped(text[position:start]), "<mark>", _escaped(text[start:end]), "</mark>"]
        position = end
    pieces.append(_escaped(text[position : spans[-1][2]]))
    return "".join(pieces)


def _escaped(text: str) -> str:
    collapsed = _WHITESPACE.sub(" ", text)
    return collapsed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
