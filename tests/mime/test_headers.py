"""Header primitives: field splitting, parameters, encoded words, message ids."""

from __future__ import annotations

import pytest

from mailsvc.mime import headers as hdr


def test_split_fields_unfolds_and_finds_the_body() -> None:
    block = "Subject: one\r\n two\r\nX-Empty:\r\nTo : a@b\r\n\r\nbody"
    notes: list[str] = []
    fields, body = hdr.split_fields(block, notes, "header")
    assert fields == [("subject", " one two"), ("x-empty", ""), ("to", " a@b")]
    assert block[body:] == "body"
    assert notes == []


def test_split_fields_stops_at_a_line_that_is_not_a_field() -> None:
    notes: list[str] = []
    fields, body = hdr.split_fields("A: 1\nnot a field\nB: 2\n", notes, "part 2")
    assert fields == [("a", " 1")]
    assert body == len("A: 1\n")
    assert notes == ["part 2: malformed header line, header block ended early"]


def test_split_fields_caps_the_field_count() -> None:
    block = "".join(f"X-{n}: v\n" for n in range(3_000)) + "\nbody"
    notes: list[str] = []
    fields, body = hdr.split_fields(block, notes, "header")
    assert len(fields) == 2_000
    assert block[body:] == "body"
    assert notes == ["header: more than 2000 header fields, rest ignored"]


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ('; charset="utf-8"; format=flowed', {"charset": "utf-8", "format": "flowed"}),
        ("; NAME=a.txt; name=b.txt", {"name": "a.txt"}),  # the first one wins
        ('; name="a \\"b\\" c.txt"', {"name": 'a "b" c.txt'}),
        ("; broken; x=1", {"x": "1"}),
        ("; filename*=UTF-8''%E2%82%AC%20rates.pdf", {"filename": "€ rates.pdf"}),
        ("; filename*1=b; filename*0=a", {"filename": "ab"}),  # sections sorted
        ("; filename=old.txt; filename*=utf-8''new.txt", {"filename": "new.txt"}),
        ('; name="=?utf-8?Q?caf=C3=A9?=.pdf"', {"name": "café.pdf"}),
        ('; name="unterminated', {"name": "unterminated"}),
        ("", {}),
    ],
)
def test_parameters(rest: str, expected: dict[str, str]) -> None:
    assert hdr.parameters(rest, [], "part 1") == expected


def test_encoded_words_keep_text_between_them() -> None:
    notes: list[str] = []
    value = "=?utf-8?q?a?= plain =?utf-8?b?w7w=?=  =?utf-8?q?_end?="
    assert hdr.decode_words(value, notes, "subject") == "a plain ü end"
    assert notes == []


def test_malformed_encoded_word_stays_as_is() -> None:
    assert hdr.decode_words("=?utf-8?x?abc?= ok", [], "subject") == "=?utf-8?x?abc?= ok"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@b> <c@d>", ["a@b", "c@d"]),
        ("  <a@b>", ["a@b"]),
        ("<>", []),
        ("a@b", ["a@b"]),
        ("no id here", []),
        ("<a@b>\r\n\t<c@\r\n d>", ["a@b", "c@d"]),
    ],
)
def test_message_ids(value: str, expected: list[str]) -> None:
    assert hdr.message_ids(value) == expected
