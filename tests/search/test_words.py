# Cyrillic and CJK text is the point of this file.
# ruff: noqa: RUF001
"""The one word splitter of search documents and searches, and the free-text reader."""

from __future__ import annotations

import pytest

from mailsvc.search.query import parse_query
from mailsvc.search.words import (
    MAX_WORD_BYTES,
    FreeText,
    Term,
    parse_free_text,
    word_spans,
    words,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Quarterly REPORT", ["quarterly", "report"]),
        ("alice@acme.test", ["alice", "acme", "test"]),
        ("east-coast", ["east", "coast"]),
        ("Alice Smith <alice@acme.test>", ["alice", "smith", "alice", "acme", "test"]),
        ("Invoice 4711, Q3 and 007.", ["invoice", "4711", "q3", "and", "007"]),
        ("snake_case words", ["snake", "case", "words"]),
        ("Проект стартует", ["проект", "стартует"]),
        ("Grüße aus MÜNCHEN", ["grüsse", "aus", "münchen"]),
        ("Straße", ["strasse"]),
        # NFKC: full-width letters and ligatures are the plain ones.
        ("ＰＤＦ ﬁle", ["pdf", "file"]),
        # A combining mark belongs to its word (decomposed é, Devanagari vowel signs).
        ("cafe\u0301 हिंदी", ["café", "हिंदी"]),
        # A mark after a symbol (an emoji's variation selector) is no word.
        ("❤\ufe0f ok", ["ok"]),
        ("", []),
        ("!!! -- ...", []),
    ],
)
def test_words_are_lower_cased_letters_and_digits(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("会议通知", ["会议", "议通", "通知"]),
        ("会", ["会"]),
        ("明天的会议，请通知", ["明天", "天的", "的会", "会议", "请通", "通知"]),
        ("Python编程", ["python", "编程"]),
        ("明日の会議", ["明日", "日の", "の会", "会議"]),
        ("회의가 취소", ["회의", "의가", "취소"]),
    ],
)
def test_cjk_runs_are_overlapping_bigrams(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_the_query_side_bigrams_split_into_the_same_words() -> None:
    # search.query already turns a CJK term into the phrase of its bigrams; splitting
    # that phrase again gives the document's words, in the same order.
    parsed = parse_query("会议通知 Python编程")
    assert words(parsed.text) == words("会议通知") + words("Python编程")


def test_words_too_long_for_postgresql_are_dropped() -> None:
    longest = "a" * MAX_WORD_BYTES
    assert words(f"{longest} {longest}b ok") == [longest, "ok"]
    # Bytes, not characters: two bytes each in UTF-8.
    assert words("ж" * (MAX_WORD_BYTES // 2 + 1)) == []


def test_spans_point_at_the_text_each_word_was_read_from() -> None:
    text = "Hi, ALICE@acme.test: 会议通知!"
    assert [(word, text[start:end]) for word, start, end in word_spans(text)] == [
        ("hi", "Hi"),
        ("alice", "ALICE"),
        ("acme", "acme"),
        ("test", "test"),
        ("会议", "会议"),
        ("议通", "议通"),
        ("通知", "通知"),
    ]


def _terms(*clauses: tuple[Term, ...]) -> FreeText:
    return FreeText(tuple(clauses))


def _word(*parts: str, negated: bool = False) -> Term:
    return Term(parts, negated)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budget report", _terms((_word("budget"),), (_word("report"),))),
        ('"quarterly report"', _terms((_word("quarterly", "report"),))),
        (
            '"open quote runs to the end',
            _terms((_word("open", "quote", "runs", "to", "the", "end"),)),
        ),
        ("invoice OR receipt", _terms((_word("invoice"), _word("receipt")))),
        # OR binds tighter than the AND between terms.
        ("a b OR c", _terms((_word("a"),), (_word("b"), _word("c")))),
        ("pizza or sushi", _terms((_word("pizza"),), (_word("or"),), (_word("sushi"),))),
        ("OR pizza", _terms((_word("or"),), (_word("pizza"),))),
        ("pizza OR", _terms((_word("pizza"),), (_word("or"),))),
        ("invoice -draft", _terms((_word("invoice"),), (_word("draft", negated=True),))),
        ('-"old plan" x', _terms((_word("old", "plan", negated=True),), (_word("x"),))),
        ("alice@acme.test", _terms((_word("alice", "acme", "test"),))),
        ("east-coast", _terms((_word("east", "coast"),))),
        ("-alice@acme.test", _terms((_word("alice", "acme", "test", negated=True),))),
        # A quoted OR is a word; so is one in a phrase.
        ('"OR" "a OR b"', _terms((_word("or"),), (_word("a", "or", "b"),))),
        ("report !!! - ", _terms((_word("report"),))),
        ("!!!", _terms()),
        ('foo"bar baz"', _terms((_word("foo"),), (_word("bar", "baz"),))),
    ],
)
def test_free_text_is_read_as_websearch_syntax(text: str, expected: FreeText) -> None:
    assert parse_free_text(text) == expected


def test_positive_words_leave_out_the_negated_terms() -> None:
    free = parse_free_text('budget OR "east coast" -draft -"old plan"')
    assert free.positive_words == {"budget", "east", "coast"}
