"""Reply and forward helpers: subject markers, ids, attribution, file names."""

# CJK clients write a full-width colon after their reply marker.
# ruff: noqa: RUF001

from __future__ import annotations

import ast
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mailsvc.compose
from mailsvc.compose.model import Mailbox, OriginalMessage
from mailsvc.compose.reply import (
    MAX_REFERENCES,
    forward_subject,
    forward_text,
    forwarded_filename,
    message_ids,
    quote_html,
    quote_text,
    reply_subject,
    thread_headers,
)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "Re: Hello"),
        ("Re: Hello", "Re: Hello"),
        ("RE:Hello", "RE:Hello"),
        ("re[2]: Hello", "re[2]: Hello"),
        ("Aw: Hallo", "Aw: Hallo"),
        ("SV: Hej", "SV: Hej"),
        ("Antw: Hallo", "Antw: Hallo"),
        ("回复：你好", "回复：你好"),
        ("[list] Re: topic", "[list] Re: topic"),
        ("[list] topic", "Re: [list] topic"),
        ("Fwd: Hello", "Re: Fwd: Hello"),
        ("Regarding: Hello", "Re: Regarding: Hello"),
        ("Reply needed", "Re: Reply needed"),
        ("  spaced   out  ", "Re: spaced out"),
        ("", "Re:"),
        (None, "Re:"),
        ("bad \udcff byte\x00", "Re: bad ? byte"),
    ],
)
def test_reply_subject(subject: str | None, expected: str) -> None:
    assert reply_subject(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "Fwd: Hello"),
        ("FW: Hello", "FW: Hello"),
        ("Fwd: Hello", "Fwd: Hello"),
        ("WG: Hallo", "WG: Hallo"),
        ("TR: Bonjour", "TR: Bonjour"),
        ("转发: 你好", "转发: 你好"),
        ("Re: Hello", "Fwd: Re: Hello"),
        (None, "Fwd:"),
    ],
)
def test_forward_subject(subject: str | None, expected: str) -> None:
    assert forward_subject(subject) == expected


def test_subject_markers_are_cheap_on_hostile_subjects() -> None:
    hostile = "Re: " * 50_000 + "[" * 50_000
    started = time.perf_counter()
    reply_subject(hostile)
    forward_subject(hostile)
    assert time.perf_counter() - started < 1


def test_message_ids_accept_brackets_bare_ids_and_lists() -> None:
    assert message_ids(["<a@x>", "b@x", " <c@x> <d@x>", "<a@x>", "", "<>"]) == [
        "a@x",
        "b@x",
        "c@x",
        "d@x",
    ]


def test_message_ids_drop_what_cannot_go_into_a_header() -> None:
    assert message_ids(["<a b@x>", "<ü@x>", "<a\r\n@x>", "<" + "x" * 251 + ">", "<ok@x>"]) == [
        "ok@x"
    ]


def test_thread_headers_move_the_parent_to_the_end() -> None:
    original = OriginalMessage(message_id="p@x", references=("<p@x>", "<r@x>"))
    assert thread_headers(original) == ("<p@x>", ("<r@x>", "<p@x>"))


def test_thread_headers_cap_keeps_root_and_nearest_ancestors() -> None:
    references = tuple(f"<{index}@x>" for index in range(100))
    _, kept = thread_headers(OriginalMessage(message_id="p@x", references=references))
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == "<0@x>"
    assert kept[-2:] == ("<99@x>", "<p@x>")


def test_attribution_without_date_or_sender() -> None:
    original = OriginalMessage(text_body="old")
    assert quote_text(None, original) == "The sender wrote:\n> old\n"
    dated = OriginalMessage(text_body="old", date=datetime(2024, 1, 2, 3, 4, tzinfo=UTC))
    assert (
        quote_text("new", dated)
        == "new\n\nOn Tue, 02 Jan 2024 03:04:00 +0000, the sender wrote:\n> old\n"
    )


def test_quoted_text_is_cleaned_of_what_mail_cannot_carry() -> None:
    original = OriginalMessage(
        from_=(Mailbox("b@x", "Bob\r\nBcc: x"),), text_body="a\x00b\r\nc\rd\udcff\n\n\n"
    )
    assert quote_text(None, original) == "Bob Bcc: x <b@x> wrote:\n> ab\n> c\n> d?\n"


def test_quote_html_appends_when_there_is_no_body_tag() -> None:
    original = OriginalMessage(text_body="x & y")
    html = quote_html("<p>Hi</p>", original)
    assert html is not None
    assert html.startswith("<p>Hi</p>\n<div")
    assert "x &amp; y" in html
    assert quote_html(None, original) is None


def test_quote_html_goes_before_the_last_body_end_tag() -> None:
    html = quote_html("<BODY>a</Body ><!-- </body> --></BODY>", OriginalMessage(text_body="q"))
    assert html is not None
    assert html.startswith("<BODY>a</Body ><!-- </body> --><div")
    assert html.endswith("</blockquote></div>\n</BODY>")


def test_forward_text_without_original_text_or_fields() -> None:
    assert forward_text(None, OriginalMessage()) == "---------- Forwarded message ---------\n"


@pytest.mark.parametrize(
    ("subject", "filename"),
    [
        ("Quarterly report", "Quarterly report.eml"),
        ('a/b\\c:d*e?f"g<h>i|j', "a b c d e f g h i j.eml"),
        ("Line\r\nbreak", "Line break.eml"),
        ("...", "forwarded message.eml"),
        (None, "forwarded message.eml"),
        ("x" * 300, "x" * 100 + ".eml"),
        ("bad \udcff byte", "bad byte.eml"),
    ],
)
def test_forwarded_filename(subject: str | None, filename: str) -> None:
    assert forwarded_filename(OriginalMessage(subject=subject)) == filename


def test_compose_is_pure() -> None:
    """STYLE.md rule 7: no I/O or framework library in the composition layer."""
    forbidden = {"sqlalchemy", "aioimaplib", "aiosmtplib", "asyncio", "fastapi", "redis", "arq"}
    package = Path(mailsvc.compose.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
