"""The words of search documents and of searches: one splitter for both sides.

Pure: no SQL, no I/O. A document and a search that went through different splitters
would disagree on edge cases (PostgreSQL's own parser keeps `alice@acme.test` and
`east-coast` whole, and its idea of a letter depends on the database's locale), so
every word that is indexed or searched for comes from `words` here.

A word is a run of letters and digits (any script; combining marks inside a word
belong to it, or Devanagari or Thai words would fall apart), normalized with NFKC
(full-width Latin letters are the plain ones, a ligature its letters) and
case-folded (`Straße` is `strasse`). Everything else separates words:
`alice@acme.test` is alice, acme, test and `east-coast` is east, coast.

Chinese, Japanese and Korean are written without spaces, so a run of their
characters (`search.query.CJK_CHARACTER_CLASS`) becomes its overlapping bigrams
("会议通知" -> 会议, 议通, 通知); a run of one character stays itself. No stemming
and no stop words. Words longer than `MAX_WORD_BYTES` in UTF-8 are dropped (base64
and the like; PostgreSQL cannot index them).

`parse_free_text` reads the free text of a search (`SearchQuery.text`, websearch
syntax) into terms of these words, for a backend to turn into its own query.
"""

from __future__ import annotations

import itertools
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from mailsvc.search.query import CJK_CHARACTER_CLASS

MAX_WORD_BYTES = 2046
"""The longest lexeme PostgreSQL accepts, in bytes of UTF-8."""


def _mark_class() -> str:
    """A regex character class body of every combining mark (Unicode category M)."""
    ranges: list[tuple[int, int]] = []
    # Marks live in the first two planes and among the variation selectors of plane 14.
    for code in (*range(0x20000), *range(0xE0000, min(0xE1000, sys.maxunicode + 1))):
        if unicodedata.category(chr(code))[0] != "M":
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in ranges)


# A run of word characters: a letter or digit (`\w` once underscores are gone: the
# splitter replaces them by spaces first), then letters, digits and marks. Marks may
# follow, never lead: a variation selector after an emoji is no word. Capturing, so
# that `split` returns separators and runs alternately.
_RUN = re.compile(rf"(\w[\w{_mark_class()}]*)")
# The same runs in ASCII text, which has no marks: a class of 62 characters is much
# cheaper for the regex engine than one holding every mark of Unicode.
ASCII_RUN = re.compile(r"([A-Za-z0-9]+)")
_CJK_RUN = re.compile(CJK_CHARACTER_CLASS + "+")

WordSpan = tuple[str, int, int]
"""`(word, start, end)`: a word and the characters `text[start:end]` it was read from
(a whole run for the several words NFKC may make of one: the fraction one half is the
words 1 and 2)."""

# Every function here runs over whole bodies (documents) and over the page's bodies
# (excerpts), so the work per word stays in the regex engine and in C built-ins where
# it can. Most text is NFKC-normal already: it is split once and its runs case-folded;
# only CJK runs, and text that normalization would reshape, are taken run by run.


def words(text: str) -> list[str]:
    """The words of `text`, in order (see the module docstring)."""
    return [word for word, _, _ in word_spans(text)]


def word_spans(text: str) -> list[WordSpan]:
    """The words of `text` with the offsets they were read from, in order."""
    is_ascii = text.isascii()
    normal = is_ascii or unicodedata.is_normalized("NFKC", text)
    # Replacing "_" keeps every offset as it was (the ASCII class has no "_").
    parts = ASCII_RUN.split(text) if is_ascii else _RUN.split(text.replace("_", " "))
    # parts = [separator, run, separator, run, ..., separator]: offsets by their lengths.
    ends = list(itertools.accumulate(map(len, parts)))
    runs, starts, stops = parts[1::2], ends[0:-1:2], ends[1::2]
    has_cjk = not is_ascii and _CJK_RUN.search(text) is not None
    if normal and not has_cjk:
        # Case folding keeps a run one word (it maps letters to letters and marks).
        folded = list(map(str.casefold, runs))
        spans = list(zip(folded, starts, stops, strict=True))
        # A character takes at most 4 bytes: only a long word can be too long.
        if max(map(len, folded), default=0) * 4 > MAX_WORD_BYTES:
            return [span for span in spans if _fits(span[0])]
        return spans
    spans = []
    for run, start, stop in zip(runs, starts, stops, strict=True):
        if has_cjk and _CJK_RUN.fullmatch(run) is not None:
            _add_bigrams(spans, run, start)
        elif has_cjk and _CJK_RUN.search(run) is not None:
            _add_cjk_run(spans, run, start)
        elif not normal:
            _add_plain(spans, run, start)
        elif _fits(word := run.casefold()):
            spans.append((word, start, stop))
    return spans


def _fits(word: str) -> bool:
    return len(word.encode()) <= MAX_WORD_BYTES


def _add_cjk_run(spans: list[WordSpan], run: str, start: int) -> None:
    """The words of a run with CJK characters: those parts as their bigrams."""
    segment_start = 0
    for cjk in _CJK_RUN.finditer(run):
        _add_plain(spans, run[segment_start : cjk.start()], start + segment_start)
        _add_bigrams(spans, cjk.group(), start + cjk.start())
        segment_start = cjk.end()
    _add_plain(spans, run[segment_start:], start + segment_start)


def _add_plain(spans: list[WordSpan], segment: str, start: int) -> None:
    if not segment:
        return
    end = start + len(segment)
    # NFKC can turn one run into several words, or none.
    normalized = unicodedata.normalize("NFKC", segment).casefold().replace("_", " ")
    spans += ((word, start, end) for word in _RUN.findall(normalized) if _fits(word))


def _add_bigrams(spans: list[WordSpan], run: str, start: int) -> None:
    if len(run) == 1:
        spans.append((run, start, start + 1))
        return
    # Each character joined to the next, offsets counted: all in C, as CJK bodies are
    # one word per character.
    bigrams = map(str.__add__, run[:-1], run[1:])
    spans += zip(bigrams, range(start, start + len(run) - 1), itertools.count(start + 2))


@dataclass(frozen=True, slots=True)
class Term:
    """One word, or a phrase (its words next to each other, in order), or its absence."""

    words: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class FreeText:
    """The free text of a search: every clause must hold, and a clause holds when any
    of its terms does (`budget OR forecast` is one clause of two terms)."""

    clauses: tuple[tuple[Term, ...], ...]

    @property
    def positive_words(self) -> frozenset[str]:
        """The words a match may contain because the search asks for them (for
        highlighting): those of every term that is not negated."""
        positive = (term for clause in self.clauses for term in clause if not term.negated)
        return frozenset(word for term in positive for word in term.words)


_OR = "OR"


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    negated: bool
    quoted: bool


def parse_free_text(text: str) -> FreeText:
    """Read websearch syntax: words, "quoted phrases" (a quote left open runs to the
    end), `OR` in capitals between two terms, `-word` and `-"phrase"` to exclude.

    A word that `words` splits (`alice@acme.test`, `east-coast`) is the phrase of its
    parts, as typed. Terms without any word (`!!!`, a lone `-`) are left out; an `OR`
    with no term on one side is the word "or". An empty result means the text asks
    for no word at all: a search with such text matches nothing.
    """
    clauses: list[list[Term]] = []
    joining = False
    for token in _tokens(text):
        if token.text == _OR and not (token.quoted or token.negated) and clauses and not joining:
            joining = True
            continue
        term = Term(tuple(words(token.text)), token.negated)
        if not term.words:
            continue
        if joining:
            clauses[-1].append(term)
            joining = False
        else:
            clauses.append([term])
    if joining:
        clauses.append([Term(("or",))])
    return FreeText(tuple(tuple(clause) for clause in clauses))


def _tokens(text: str) -> Iterator[_Token]:
    """Terms as typed: an optional `-`, then a quoted phrase or a bare word (which ends
    at whitespace or at a quote)."""
    index, length = 0, len(text)
    while index < length:
        if text[index].isspace():
            index += 1
            continue
        negated = text[index] == "-" and index + 1 < length and not text[index + 1].isspace()
        if negated:
            index += 1
        if text[index] == '"':
            close = text.find('"', index + 1)
            end = length if close < 0 else close
            yield _Token(text[index + 1 : end], negated, quoted=True)
            index = end + 1
            continue
        end = index
        while end < length and not text[end].isspace() and text[end] != '"':
            end += 1
        yield _Token(text[index:end], negated, quoted=False)
        index = end
