"""BODYSTRUCTURE parsing and the size-cap path built on it."""

from __future__ import annotations

import pickle
import random

import pytest

from mailsvc.mime import parse_message
from mailsvc.mime.bodystructure import (
    BodyPart,
    attachments_from_structure,
    iter_parts,
    parse_bodystructure,
    parse_partial,
    text_sections,
)
from tests.mime.samples import assert_storable, eml

RFC3501_TEXT = '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
# RFC 3501 7.4.2, the multipart example.
RFC3501_MIXED = (
    '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
    '("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
    '"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
)

CAROL = '(("Carol" NIL "carol" "example.org"))'
# What Dovecot answers for tests/mime/corpus/nested.eml (extension data included).
NESTED = (
    "("
    '(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 13 1 NIL NIL NIL NIL)'
    '("text" "html" ("charset" "utf-8") NIL NIL "7bit" 20 1 NIL NIL NIL NIL)'
    ' "alternative" ("boundary" "alt") NIL NIL NIL)'
    '("image" "png" ("name" "photo.png") NIL NIL "base64" 1398 NIL'
    ' ("attachment" ("filename" "photo.png")) NIL NIL)'
    '("message" "rfc822" NIL NIL NIL "7bit" 1455'
    f' (NIL "Inner message" {CAROL} {CAROL} {CAROL} NIL NIL NIL NIL "<inner-1@example.org>")'
    ' (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 NIL NIL NIL NIL)'
    '("application" "pdf" ("name" "report.pdf") NIL NIL "base64" 1072 NIL'
    ' ("attachment" ("filename" "report.pdf")) NIL NIL)'
    ' "mixed" ("boundary" "inner") NIL NIL NIL)'
    ' 40 NIL ("attachment" ("filename" "forwarded.eml")) NIL NIL)'
    ' "mixed" ("boundary" "outer") NIL NIL NIL)'
)
# tests/mime/corpus/inline_cid.eml
INLINE_CID = (
    '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 18 1 NIL NIL NIL NIL)'
    '(("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 84 1 NIL NIL NIL NIL)'
    '("image" "png" NIL "<logo@example.com>" NIL "base64" 274 NIL NIL NIL NIL)'
    '("image" "gif" ("name" "unused.gif") "<unused@example.com>" NIL "base64" 22 NIL'
    " NIL NIL NIL)"
    ' "related" ("boundary" "r1" "type" "text/html") NIL NIL NIL)'
    ' "alternative" ("boundary" "a1") NIL NIL NIL)'
)
# tests/mime/corpus/rfc2231.eml: Dovecot passes RFC 2231 parameters through as written.
RFC2231 = (
    '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 18 1 NIL NIL NIL NIL)'
    '("application" "pdf" NIL NIL NIL "base64" 10 NIL'
    ' ("attachment" ("filename*" "utf-8\'\'%C3%9Cbersicht%20M%C3%A4rz.pdf")) NIL NIL)'
    '("text" "csv" ("charset" "us-ascii") NIL NIL "7bit" 5 1 NIL ("attachment"'
    ' ("filename*0*" "iso-8859-1\'de\'Gr%F6%DFen" "filename*1" "-Tabelle"'
    ' "filename*2" ".csv")) NIL NIL)'
    '("application" "octet-stream" ("name" "=?utf-8?B?0L7RgtGH0ZHRgi5kb2N4?=") NIL NIL'
    ' "quoted-printable" 11 NIL'
    ' ("attachment" ("filename" "=?utf-8?B?0L7RgtGH0ZHRgi5kb2N4?=")) NIL NIL)'
    ' "mixed" ("boundary" "b") NIL NIL NIL)'
)


def _structure(text: str | bytes) -> BodyPart:
    structure = parse_bodystructure(text)
    assert structure is not None
    return structure


def test_rfc3501_single_part_example() -> None:
    structure = _structure(RFC3501_TEXT)
    assert structure == BodyPart(
        section="1",
        content_type="text/plain",
        params={"charset": "US-ASCII"},
        encoding="7bit",
        size=3028,
        lines=92,
    )
    assert text_sections(structure) == [("1", "US-ASCII", "7bit", "plain")]
    assert attachments_from_structure(structure) == []


def test_rfc3501_multipart_example() -> None:
    structure = _structure(RFC3501_MIXED)
    assert structure.content_type == "multipart/mixed"
    assert structure.section == ""
    first, diff = structure.children
    assert (first.section, first.size, first.lines) == ("1", 1152, 23)
    assert diff.section == "2"
    assert diff.content_id == "960723163407.20117h@cac.washington.edu"
    assert diff.description == "Compiler diff"
    assert diff.encoding == "base64"
    assert diff.filename == "cc.diff"
    assert text_sections(structure) == [("1", "US-ASCII", "7bit", "plain")]
    (attachment,) = attachments_from_structure(structure)
    assert (attachment.section, attachment.filename, attachment.content_type) == (
        "2",
        "cc.diff",
        "text/plain",
    )
    # base64 text with a known line count: (4554 - 2 * 73) * 3 / 4
    assert attachment.size == 3306


def test_fetch_response_wrapper_and_bytes() -> None:
    response = (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b'ENVELOPE ("date" "BODYSTRUCTURE" (("x" NIL "x" "y")) NIL NIL NIL NIL NIL NIL NIL) '
        b"BODYSTRUCTURE " + RFC3501_TEXT.encode() + b" UID 5)"
    )
    structure = _structure(response)
    assert (structure.content_type, structure.size) == ("text/plain", 3028)


def test_literals_nil_and_escapes() -> None:
    structure = _structure(
        b'("text" "plain" ("charset" {5}\r\nutf-8 "name" "a \\"quoted\\" name.txt") NIL '
        b'{11}\r\nDescription "QUOTED-PRINTABLE" 10 2 NIL ("inline" NIL) ("en" "de") '
        b'"http://example.com/x" (1 (2 "three")))'
    )
    assert structure.params == {"charset": "utf-8", "name": 'a "quoted" name.txt'}
    assert structure.description == "Description"
    assert structure.encoding == "quoted-printable"
    assert structure.disposition == "inline"
    assert structure.disposition_params == {}


def test_raw_utf8_and_encoded_words_in_strings() -> None:
    structure = _structure(
        '("application" "pdf" ("name" "Übersicht.pdf") NIL "=?utf-8?q?Bericht_f=C3=BCr?="'
        ' "base64" 78 NIL NIL NIL NIL)'
    )
    assert structure.filename == "Übersicht.pdf"
    assert structure.description == "Bericht für"


def test_nested_message_sections() -> None:
    structure = _structure(NESTED)
    sections = [(part.section, part.content_type) for part in iter_parts(structure)]
    assert sections == [
        ("", "multipart/mixed"),
        ("1", "multipart/alternative"),
        ("1.1", "text/plain"),
        ("1.2", "text/html"),
        ("2", "image/png"),
        ("3", "message/rfc822"),
        ("3", "multipart/mixed"),
        ("3.1", "text/plain"),
        ("3.2", "application/pdf"),
    ]
    forwarded = structure.children[2]
    assert forwarded.message is not None
    assert forwarded.lines == 40
    assert forwarded.filename == "forwarded.eml"
    assert text_sections(structure) == [
        ("1.1", "utf-8", "7bit", "plain"),
        ("1.2", "utf-8", "7bit", "html"),
    ]


def test_attached_single_part_message_is_numbered_inside() -> None:
    structure = _structure(
        '(("text" "plain" NIL NIL NIL "7bit" 1 1)("message" "rfc822" NIL NIL NIL "7bit" 50'
        ' (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" NIL NIL NIL "7bit" 5 1) 3)'
        ' "mixed")'
    )
    assert [part.section for part in iter_parts(structure)] == ["", "1", "2", "2.1"]


def test_estimated_sizes() -> None:
    structure = _structure(NESTED)
    photo, forwarded = attachments_from_structure(structure)
    assert photo.size == 1398 * 57 // 78  # base64 without a line count: 76-char lines
    assert forwarded.size == 1455


@pytest.mark.parametrize(
    "garbage",
    ["", "NIL", "(", ")", "((((", "* 1 FETCH (UID 1)", "(1 2 3)", '("text")', "\x00\xff", "{99}"],
)
def test_garbage_never_raises(garbage: str) -> None:
    structure = parse_bodystructure(garbage)
    if structure is not None:
        text_sections(structure)
        attachments_from_structure(structure)
        parse_partial(b"Subject: x\r\n\r\n", structure, {})


def test_deep_nesting_is_bounded() -> None:
    text = '("text" "plain" NIL NIL NIL "7bit" 1 1)'
    for _ in range(5_000):
        text = f'({text} "mixed")'
    structure = _structure(text)
    assert len(list(iter_parts(structure))) < 100


def test_structure_pickles() -> None:
    structure = _structure(NESTED)
    assert pickle.loads(pickle.dumps(structure)) == structure


def _header(raw: bytes) -> bytes:
    return raw[: raw.index(b"\r\n\r\n") + 4]


@pytest.mark.parametrize(
    ("name", "bodystructure", "text_parts"),
    [
        (
            "nested.eml",
            NESTED,
            {"1.1": b"Plain body.\r\n", "1.2": b"<p>HTML body.</p>\r\n"},
        ),
        (
            "inline_cid.eml",
            INLINE_CID,
            {
                "1": b"Newsletter text.\r\n",
                "2.1": b'<html><body><img src="cid:logo@example.com"><p>Newsletter HTML.</p>'
                b"</body></html>\r\n",
            },
        ),
        ("rfc2231.eml", RFC2231, {"1": b"See attachments."}),
    ],
)
def test_sections_and_fields_match_parse_message(
    name: str, bodystructure: str, text_parts: dict[str, bytes]
) -> None:
    raw = eml(name)
    full = parse_message(raw)
    structure = _structure(bodystructure)
    assert [section for section, *_ in text_sections(structure)] == sorted(text_parts)
    partial = parse_partial(_header(raw), structure, text_parts)

    assert partial.parts == full.parts
    assert [
        (a.section, a.filename, a.content_type, a.content_id, a.is_inline, a.encoding)
        for a in partial.attachments
    ] == [
        (a.section, a.filename, a.content_type, a.content_id, a.is_inline, a.encoding)
        for a in full.attachments
    ]
    assert partial.has_attachments == full.has_attachments
    for field in ("message_id", "subject", "from_", "to", "date", "text_body", "html_body"):
        assert getattr(partial, field) == getattr(full, field), field
    assert partial.snippet == full.snippet
    assert partial.parse_errors == []


def test_partial_notes_missing_text_and_missing_structure() -> None:
    header = b"Subject: Big one\r\nFrom: a@example.com\r\n\r\n"
    partial = parse_partial(header, _structure(NESTED), {"1.1": b"Only plain\r\n"})
    assert partial.subject == "Big one"
    assert partial.text_body == "Only plain\n"
    assert partial.html_body is None
    assert partial.parse_errors == ["part 1.2: text not fetched"]

    bare = parse_partial(header, None, {})
    assert bare.subject == "Big one"
    assert bare.parts == []
    assert bare.parse_errors == ["no usable BODYSTRUCTURE; header fields only"]


def test_partial_decodes_transfer_encoding_and_charset() -> None:
    structure = _structure(
        '("text" "plain" ("charset" "koi8-r") NIL NIL "base64" 40 1 NIL NIL NIL NIL)'
    )
    partial = parse_partial(b"Subject: x\r\n\r\n", structure, {"1": b"0NLJ18XU\r\n"})
    assert partial.text_body == "привет"


def test_fuzzed_structures_never_raise() -> None:
    rng = random.Random(3501)
    sources = [NESTED, INLINE_CID, RFC2231, RFC3501_MIXED]
    for _ in range(300):
        data = bytearray(rng.choice(sources).encode())
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[position] = rng.choice(b'()" \\{}0123456789N\xff')
            else:
                del data[position : position + rng.randint(1, 30)]
        structure = parse_bodystructure(bytes(data))
        partial = parse_partial(b"Subject: fuzz\r\n\r\n", structure, {"1": b"x", "1.1": b"y"})
        assert_storable(partial)
