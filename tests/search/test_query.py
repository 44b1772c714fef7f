"""parse_query and cjk_bigrams: Gmail-style searches into a SearchQuery."""

from __future__ import annotations

import ast
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

import mailsvc.search.query
from mailsvc.models.mailbox import MAILBOX_ROLES
from mailsvc.search.query import (
    MAX_QUERY_CHARS,
    MAX_TERMS,
    QuerySyntaxError,
    SearchQuery,
    cjk_bigrams,
    parse_query,
)

TODAY = date(2024, 3, 15)


def _refused(q: str) -> QuerySyntaxError:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(q, today=TODAY)
    return caught.value


# Free text


@pytest.mark.parametrize("q", ["", "   ", "\t\n"])
def test_an_empty_search_is_empty_text(q: str) -> None:
    assert parse_query(q) == SearchQuery(text="")


@pytest.mark.parametrize(
    ("q", "text"),
    [
        ("budget", "budget"),
        ("budget  report", "budget report"),
        ('"quarterly report"', '"quarterly report"'),
        ('budget "quarterly report" 2024', 'budget "quarterly report" 2024'),
        ("budget OR forecast", "budget OR forecast"),
        ("budget or forecast", "budget or forecast"),
        ("budget -draft", "budget -draft"),
        ('report -"old plan"', 'report -"old plan"'),
        # An unclosed quote runs to the end; websearch_to_tsquery reads it as a phrase.
        ('budget "quarterly report', 'budget "quarterly report'),
    ],
)
def test_free_text_passes_through_in_websearch_syntax(q: str, text: str) -> None:
    assert parse_query(q) == SearchQuery(text=text)


@pytest.mark.parametrize(
    "q",
    [
        "http://example.com/a?b=c",
        "https://example.com",
        "mailto:bob@example.com",
        "12:30",
        "foo:bar",
        "ticket:ABC-123",
        '"from:alice"',
        "-foo:bar",
    ],
)
def test_unknown_word_colon_value_terms_are_free_text(q: str) -> None:
    assert parse_query(q) == SearchQuery(text=q)


@pytest.mark.parametrize(
    "q",
    [
        "Привет мир",  # Russian
        "Straße Größe Übermorgen",  # German
        "Καλημέρα κόσμε",  # Greek
        "مرحبا بالعالم",  # Arabic
        "café naïve",
    ],
)
def test_words_of_space_separated_languages_are_unchanged(q: str) -> None:
    assert parse_query(q).text == q


def test_a_whitespace_run_between_terms_becomes_one_space() -> None:
    assert parse_query("  budget \t\n report  ").text == "budget report"


# Address and subject operators


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("from:alice", ("alice",)),
        ("from:alice@example.com", ("alice@example.com",)),
        ('from:"Alice Smith"', ("Alice Smith",)),
        ('from:"  Alice   Smith "', ("Alice Smith",)),
        ("FROM:alice", ("alice",)),
        ("From:Alice", ("Alice",)),
        ("from:alice from:bob", ("alice", "bob")),
    ],
)
def test_from(q: str, expected: tuple[str, ...]) -> None:
    assert parse_query(q) == SearchQuery(text="", from_=expected)


def test_to() -> None:
    assert parse_query('to:bob TO:"Carol Jones" To:dave@example.com').to == (
        "bob",
        "Carol Jones",
        "dave@example.com",
    )


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("subject:budget", ('"budget"',)),
        ('subject:"q3 report"', ('"q3 report"',)),
        ("SUBJECT:budget", ('"budget"',)),
        ('Subject:"Q3  Report"', ('"Q3 Report"',)),
        ('subject:"unclosed phrase', ('"unclosed phrase"',)),
        # Quoted, websearch operators in a subject value are just words.
        ("subject:-draft", ('"-draft"',)),
        ("subject:re:hello", ('"re:hello"',)),
    ],
)
def test_subject_values_are_quoted_phrases(q: str, expected: tuple[str, ...]) -> None:
    assert parse_query(q) == SearchQuery(text="", subject=expected)


def test_negated_address_and_subject_operators_exclude() -> None:
    query = parse_query('-from:alice -to:"Bob Smith" -subject:newsletter budget')
    assert query == SearchQuery(
        text="budget",
        excluded_from=("alice",),
        excluded_to=("Bob Smith",),
        excluded_subject=('"newsletter"',),
    )


# Flags


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("has:attachment", SearchQuery(text="", has_attachment=True)),
        ("HAS:Attachment", SearchQuery(text="", has_attachment=True)),
        ("has:attachments", SearchQuery(text="", has_attachment=True)),
        ("-has:attachment", SearchQuery(text="", has_attachment=False)),
        ("is:unread", SearchQuery(text="", unread=True)),
        ("is:read", SearchQuery(text="", unread=False)),
        ("-is:unread", SearchQuery(text="", unread=False)),
        ("-is:read", SearchQuery(text="", unread=True)),
        ("IS:UNREAD", SearchQuery(text="", unread=True)),
        ("is:starred", SearchQuery(text="", flagged=True)),
        ("is:flagged", SearchQuery(text="", flagged=True)),
        ("-is:starred", SearchQuery(text="", flagged=False)),
        ("is:unread is:starred", SearchQuery(text="", unread=True, flagged=True)),
        ("is:unread -is:read", SearchQuery(text="", unread=True)),
    ],
)
def test_flags(q: str, expected: SearchQuery) -> None:
    assert parse_query(q) == expected


@pytest.mark.parametrize(
    ("q", "field"),
    [
        ("has:drive", "has"),
        ("is:important", "is"),
        ("is:read is:unread", "is"),
        ("is:starred -is:flagged", "is"),
        ("has:attachment -has:attachment", "has"),
    ],
)
def test_flag_values_that_are_unknown_or_contradict_are_refused(q: str, field: str) -> None:
    assert _refused(q).field == field


# Dates


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("before:2024/01/31", SearchQuery(text="", before=date(2024, 1, 31))),
        ("before:2024-01-31", SearchQuery(text="", before=date(2024, 1, 31))),
        ("before:2024/1/5", SearchQuery(text="", before=date(2024, 1, 5))),
        ("after:2024/01/01", SearchQuery(text="", after=date(2024, 1, 1))),
        ("AFTER:2024-1-1", SearchQuery(text="", after=date(2024, 1, 1))),
        ("older:2024/01/31", SearchQuery(text="", before=date(2024, 1, 31))),
        ("newer:2024/01/01", SearchQuery(text="", after=date(2024, 1, 1))),
        (
            "after:2024/01/01 before:2024/02/01",
            SearchQuery(text="", after=date(2024, 1, 1), before=date(2024, 2, 1)),
        ),
        # Every bound must hold, so the tightest wins.
        ("before:2024/03/01 before:2024/02/01", SearchQuery(text="", before=date(2024, 2, 1))),
        ("after:2024/01/01 after:2023/06/01", SearchQuery(text="", after=date(2024, 1, 1))),
        # Not before D (exclusive) is D or later: after:D (inclusive).
        ("-before:2024/01/31", SearchQuery(text="", after=date(2024, 1, 31))),
        ("-after:2024/01/01", SearchQuery(text="", before=date(2024, 1, 1))),
    ],
)
def test_dates(q: str, expected: SearchQuery) -> None:
    assert parse_query(q) == expected


@pytest.mark.parametrize(
    ("q", "field"),
    [
        ("before:2024/13/01", "before"),
        ("before:2024/02/30", "before"),
        ("before:yesterday", "before"),
        ("before:2024.01.31", "before"),
        ("before:2024/01-31", "before"),
        ("before:31/01/2024", "before"),
        ("after:2024/00/10", "after"),
        ("older:2024", "older"),
        ("newer:2024/1/32", "newer"),
    ],
)
def test_a_bad_date_is_refused_naming_the_operator(q: str, field: str) -> None:
    error = _refused(q)
    assert error.field == field
    assert str(error) == f"{field}: expects a date like 2024/01/31"


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("newer_than:7d", SearchQuery(text="", after=date(2024, 3, 8))),
        ("newer_than:0d", SearchQuery(text="", after=TODAY)),
        ("older_than:2m", SearchQuery(text="", before=TODAY - timedelta(days=60))),
        ("older_than:1y", SearchQuery(text="", before=TODAY - timedelta(days=365))),
        ("NEWER_THAN:3D", SearchQuery(text="", after=date(2024, 3, 12))),
        ("-newer_than:7d", SearchQuery(text="", before=date(2024, 3, 8))),
        ("-older_than:7d", SearchQuery(text="", after=date(2024, 3, 8))),
        # Further back than year 1 means "since forever", not an overflow.
        ("newer_than:999999y", SearchQuery(text="", after=date.min)),
    ],
)
def test_relative_dates_count_back_from_today(q: str, expected: SearchQuery) -> None:
    assert parse_query(q, today=TODAY) == expected


def test_relative_dates_default_to_the_utc_date() -> None:
    before = datetime.now(UTC).date()
    after = parse_query("newer_than:1d").after
    # The UTC date may turn over between the two readings.
    assert after in {before - timedelta(days=1), datetime.now(UTC).date() - timedelta(days=1)}


@pytest.mark.parametrize("q", ["newer_than:7", "newer_than:7w", "older_than:d", "older_than:-1d"])
def test_a_bad_age_is_refused(q: str) -> None:
    error = _refused(q)
    assert error.field == q.split(":")[0]
    assert "expects an age like 7d" in str(error)


# Mailboxes


@pytest.mark.parametrize(
    ("q", "role"),
    [
        ("in:inbox", "inbox"),
        ("in:INBOX", "inbox"),
        ("IN:Sent", "sent"),
        ("in:drafts", "drafts"),
        ("in:draft", "drafts"),
        ("in:trash", "trash"),
        ("in:bin", "trash"),
        ("in:spam", "junk"),
        ("in:junk", "junk"),
        ("in:archive", "archive"),
    ],
)
def test_in_names_a_mailbox_role(q: str, role: str) -> None:
    assert parse_query(q) == SearchQuery(text="", mailbox_role=role)


def test_every_in_role_is_a_mailbox_role_of_the_model() -> None:
    for value in ("inbox", "sent", "drafts", "trash", "spam", "archive"):
        assert parse_query(f"in:{value}").mailbox_role in MAILBOX_ROLES


def test_in_anywhere() -> None:
    assert parse_query("in:anywhere budget") == SearchQuery(text="budget", anywhere=True)


@pytest.mark.parametrize(
    ("q", "name"),
    [
        ("label:Work", "Work"),
        ('label:"Clients/Acme Corp"', "Clients/Acme Corp"),
        ("LABEL:inbox", "inbox"),
    ],
)
def test_label_names_a_mailbox(q: str, name: str) -> None:
    assert parse_query(q) == SearchQuery(text="", mailbox=name)


def test_the_same_mailbox_twice_is_one_mailbox() -> None:
    assert parse_query("in:spam in:junk").mailbox_role == "junk"


@pytest.mark.parametrize(
    ("q", "field"),
    [
        ("in:starred", "in"),
        ("in:Work", "in"),
        ("in:inbox in:sent", "in"),
        ("in:inbox label:Work", "label"),
        ("label:Work in:anywhere", "in"),
        ("-in:trash", "in"),
        ("-label:Work", "label"),
    ],
)
def test_mailbox_terms_that_cannot_hold_are_refused(q: str, field: str) -> None:
    assert _refused(q).field == field


# Refusals of the search as a whole


@pytest.mark.parametrize(
    ("q", "field"),
    [
        ("from:", "from"),
        ("budget to:", "to"),
        ('subject:""', "subject"),
        ('subject:"   "', "subject"),
        ("-from:", "from"),
        ("before:", "before"),
        ("LABEL:", "label"),
    ],
)
def test_an_empty_operator_value_is_refused(q: str, field: str) -> None:
    error = _refused(q)
    assert error.field == field
    assert str(error) == f"{field}: needs a value"


def test_a_search_longer_than_the_limit_is_refused() -> None:
    assert parse_query("a" * MAX_QUERY_CHARS).text == "a" * MAX_QUERY_CHARS
    assert _refused("a" * (MAX_QUERY_CHARS + 1)).field == "q"


def test_a_search_with_too_many_terms_is_refused() -> None:
    assert parse_query("w " * MAX_TERMS).text == " ".join(["w"] * MAX_TERMS)
    assert _refused("w " * (MAX_TERMS + 1)).field == "q"
    assert _refused("is:unread " * (MAX_TERMS + 1)).field == "q"


def test_a_nul_character_is_refused() -> None:
    assert _refused("budget\x00").field == "q"


@pytest.mark.parametrize(
    ("q", "field"),
    [
        ("from:alice OR from:bob", "from"),
        ("budget OR has:attachment", "has"),
        ("is:unread OR budget", "is"),
    ],
)
def test_or_next_to_an_operator_is_refused(q: str, field: str) -> None:
    # The operators would still be ANDed: refusing beats a silently wrong answer.
    assert _refused(q).field == field


def test_error_is_a_value_error_with_a_message() -> None:
    error = _refused("has:drive")
    assert isinstance(error, ValueError)
    assert str(error) == "has: expects attachment"


# Chinese, Japanese, Korean


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("中文字", "中文 文字"),
        ("学", "学"),
        ("Hello 世界", "Hello 世界"),
        ("中文", "中文"),
        ("中华人民共和国", "中华 华人 人民 民共 共和 和国"),
        ("Python编程", "Python 编程"),
        ("编程Python", "编程 Python"),
        ("Python编程语言3", "Python 编程 程语 语言 3"),
        ("Привет世界", "Привет 世界"),
        ("中文，测试", "中文，测试"),  # noqa: RUF001 - punctuation already separates words
        ('"中文字"', '"中文 文字"'),
        ("ひらがなカタカナ", "ひら らが がな なカ カタ タカ カナ"),  # Hiragana then Katakana
        ("한국어", "한국 국어"),  # Hangul syllables
        ("㐀㐁", "㐀㐁"),  # CJK Extension A
        ("no cjk here", "no cjk here"),
        ("", ""),
        ("ｈｅｌｌｏ", "ｈｅｌｌｏ"),  # noqa: RUF001 - full-width Latin is outside the ranges
    ],
)
def test_cjk_bigrams(text: str, expected: str) -> None:
    assert cjk_bigrams(text) == expected


@pytest.mark.parametrize(
    ("q", "text"),
    [
        ("中文字", '"中文 文字"'),
        ("学", '"学"'),
        ("-中文字", '-"中文 文字"'),
        ('"中文字 测试"', '"中文 文字 测试"'),
        ("Python编程", '"Python 编程"'),
        ("学习 Python编程 tutorial", '"学习" "Python 编程" tutorial'),
        ("東京タワー OR 大阪", '"東京 京タ タワ ワー" OR "大阪"'),
        ("한국어 -광고", '"한국 국어" -"광고"'),
    ],
)
def test_cjk_free_text_becomes_phrases_of_bigrams(q: str, text: str) -> None:
    assert parse_query(q) == SearchQuery(text=text)


def test_cjk_subject_becomes_a_phrase_of_bigrams() -> None:
    query = parse_query('subject:会议纪要 -subject:"广告 邮件"')
    assert query.subject == ('"会议 议纪 纪要"',)
    assert query.excluded_subject == ('"广告 邮件"',)


def test_cjk_names_in_address_operators_are_kept_as_typed() -> None:
    assert parse_query("from:张伟").from_ == ("张伟",)


# Together


def test_a_realistic_search() -> None:
    query = parse_query(
        'from:alice subject:"q3 report" has:attachment after:2024/01/01 budget -draft'
    )
    assert query == SearchQuery(
        text="budget -draft",
        from_=("alice",),
        subject=('"q3 report"',),
        has_attachment=True,
        after=date(2024, 1, 1),
    )


def test_operators_and_free_text_interleave() -> None:
    query = parse_query(
        'invoice in:inbox "due date" to:bills@example.com -is:unread 中文字 OR 发票 older_than:1m',
        today=TODAY,
    )
    assert query == SearchQuery(
        text='invoice "due date" "中文 文字" OR "发票"',
        to=("bills@example.com",),
        unread=False,
        before=TODAY - timedelta(days=30),
        mailbox_role="inbox",
    )


def test_the_module_imports_only_the_standard_library() -> None:
    # STYLE.md rule 7: a pure engine, tested without a database.
    tree = ast.parse(Path(mailsvc.search.query.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in sys.stdlib_module_names, name
