"""parse_message: the message-level header fields."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from mailsvc.mime import Address, ParsedMessage, parse_message
from tests.mime.samples import eml, message


def test_ids_are_read_without_brackets() -> None:
    parsed = parse_message(
        message(
            "Message-ID: <abc@example.com>",
            "In-Reply-To: <parent@example.com> (Joe's message of Monday)",
            "References: <root@example.com>",
            " <parent@example.com>\t<root@example.com>",
        )
    )
    assert parsed.message_id == "abc@example.com"
    assert parsed.in_reply_to == "parent@example.com"
    assert parsed.references == ["root@example.com", "parent@example.com"]


def test_message_id_without_brackets_and_folded_inside() -> None:
    assert parse_message(message("Message-ID: bare@example.com")).message_id == "bare@example.com"
    folded = parse_message(message("Message-ID: <folded.\r\n part@example.com>"))
    assert folded.message_id == "folded.part@example.com"


def test_garbage_in_reply_to_gives_none() -> None:
    parsed = parse_message(message("In-Reply-To: your message of yesterday"))
    assert parsed.in_reply_to is None


def test_references_keep_root_and_nearest_when_capped() -> None:
    ids = " ".join(f"<id{number}@example.com>" for number in range(150))
    parsed = parse_message(message(f"References: {ids}"))
    assert len(parsed.references) == 100
    assert parsed.references[0] == "id0@example.com"
    assert parsed.references[1] == "id51@example.com"
    assert parsed.references[-1] == "id149@example.com"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?UTF-8?B?w5xiZXJzaWNodCDinJM=?=", "Übersicht ✓"),
        ("=?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=", "Grüße aus München"),
        ("=?KOI8-R?B?78TJzs7BxMPB1NE=?=", "Одиннадцатя"),
        ("=?GB2312?B?u+HS6bGouOY=?=", "会议报告"),
        ("=?Shift_JIS?B?k/qWe4zq?=", "日本語"),
        ("=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", "日本語"),
        ("=?windows-1251?Q?=CF=F0=E8=E2=E5=F2?=", "Привет"),
    ],
)
def test_encoded_subjects_in_several_charsets(header: str, expected: str) -> None:
    parsed = parse_message(message(f"Subject: {header}"))
    assert parsed.subject == expected
    assert parsed.parse_errors == []


def test_subject_words_split_mid_character_and_folded_are_joined() -> None:
    # "Größe" in UTF-8 split between two encoded words inside the two bytes of "ö",
    # folded onto a second line: the whitespace between words disappears.
    parsed = parse_message(message("Subject: =?utf-8?Q?Gr=C3?=\r\n =?utf-8?Q?=B6=C3=9Fe?= ok"))
    assert parsed.subject == "Größe ok"


def test_subject_is_unfolded_and_cleaned_of_controls() -> None:
    parsed = parse_message(message("Subject: Hello\r\n\tworld\x07 again\x00"))
    assert parsed.subject == "Hello world again"


def test_missing_subject_is_none_and_empty_subject_is_empty() -> None:
    assert parse_message(message("From: a@example.com")).subject is None
    assert parse_message(message("Subject:")).subject == ""


def test_addresses_with_names_groups_and_garbage() -> None:
    parsed = parse_message(
        message(
            'From: "Doe, John" <john@example.com>',
            "Sender: secretary@example.com",
            "To: =?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <j@example.de>, plain@example.org,",
            " Team: alice@example.com, Bob <bob@example.com>;, undisclosed-recipients:;",
            "Cc: <<<garbage>>> , ok@example.com",
            "Bcc: hidden@example.com",
            'Reply-To: "=?iso-8859-1?q?Ren=E9?=" <rene@example.fr>',
        )
    )
    assert parsed.from_ == [Address(name="Doe, John", address="john@example.com")]
    assert parsed.sender == [Address(name=None, address="secretary@example.com")]
    assert parsed.to == [
        Address(name="Jürgen Müller", address="j@example.de"),
        Address(name=None, address="plain@example.org"),
        Address(name=None, address="alice@example.com"),
        Address(name="Bob", address="bob@example.com"),
    ]
    assert Address(name=None, address="ok@example.com") in parsed.cc
    assert parsed.bcc == [Address(name=None, address="hidden@example.com")]
    assert parsed.reply_to == [Address(name="René", address="rene@example.fr")]


def test_address_headers_in_several_fields_are_joined() -> None:
    parsed = parse_message(message("To: a@example.com", "To: b@example.com"))
    assert [address.address for address in parsed.to] == ["a@example.com", "b@example.com"]


def test_comment_style_name_is_read() -> None:
    parsed = parse_message(message("From: bbb@ddd.com (John X. Doe)"))
    assert parsed.from_ == [Address(name="John X. Doe", address="bbb@ddd.com")]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Tue, 05 Mar 2024 09:15:00 +0100", datetime(2024, 3, 5, 8, 15, tzinfo=UTC)),
        ("5 Mar 2024 09:15:00 -0500 (EST)", datetime(2024, 3, 5, 14, 15, tzinfo=UTC)),
        ("Tue, 05 Mar 2024 09:15:00 GMT", datetime(2024, 3, 5, 9, 15, tzinfo=UTC)),
        ("Tue, 05 Mar 24 09:15 -0000", datetime(2024, 3, 5, 9, 15, tzinfo=UTC)),
        ("Tue, 05 Mar 2024 09:15:00 +9999", datetime(2024, 3, 5, 9, 15, tzinfo=UTC)),
    ],
)
def test_dates_are_aware_utc(header: str, expected: datetime) -> None:
    parsed = parse_message(message(f"Date: {header}"))
    assert parsed.date == expected
    assert parsed.date is not None
    assert parsed.date.tzinfo is UTC


@pytest.mark.parametrize(
    "header",
    ["not a date", "Tue, 05 Mar 1901 09:15:00 +0000", "Tue, 05 Mar 9999 09:15:00 +0000", ""],
)
def test_unusable_dates_are_none_with_a_note(header: str) -> None:
    parsed = parse_message(message(f"Date: {header}"))
    assert parsed.date is None
    assert any(note.startswith("date:") for note in parsed.parse_errors)


def test_missing_date_is_none_without_a_note() -> None:
    parsed = parse_message(message("Subject: x"))
    assert parsed.date is None
    assert parsed.parse_errors == []


def test_raw_8bit_headers_utf8_and_legacy() -> None:
    parsed = parse_message(eml("raw_8bit_header.eml"))
    assert parsed.subject == "Réunion à 14h — café"  # raw UTF-8 (RFC 6532): no note
    # Raw Latin-1 is read in the body's charset, with a note.
    assert parsed.from_ == [Address(name="François Lefèvre", address="francois@example.fr")]
    assert parsed.parse_errors == ["from: raw 8-bit bytes in header decoded as iso-8859-1"]


def test_unknown_charset_in_encoded_word_falls_back() -> None:
    parsed = parse_message(message("Subject: =?x-unknown?Q?caf=C3=A9?="))
    assert parsed.subject == "café"
    assert parsed.parse_errors == ["subject: unknown charset 'x-unknown'"]


def test_message_without_headers() -> None:
    parsed = parse_message(b"\r\nJust a body.\r\n")
    assert parsed.subject is None
    assert parsed.text_body == "Just a body.\n"
    assert parsed.parse_errors == ["message has no header fields"]


def test_text_without_any_header_line_is_all_body() -> None:
    parsed = parse_message(b"Hello, this is not a header\r\nsecond line\r\n")
    assert parsed.text_body == "Hello, this is not a header\nsecond line\n"
    assert "message has no header fields" in parsed.parse_errors


def test_empty_input() -> None:
    parsed = parse_message(b"")
    assert parsed == ParsedMessage(parse_errors=["empty message"])


def test_mbox_from_line_is_skipped() -> None:
    parsed = parse_message(b"From someone@example.com Mon Jan  1 00:00:00 2024\nSubject: x\n\nb\n")
    assert parsed.subject == "x"
    assert parsed.parse_errors == []


def test_result_pickles_for_the_process_pool() -> None:
    parsed = parse_message(eml("nested.eml"))
    assert pickle.loads(pickle.dumps(parsed)) == parsed
