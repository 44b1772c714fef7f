from datetime import UTC, date, datetime

import pytest

from mailsvc.imap import names
from mailsvc.imap.errors import ImapProtocolError
from mailsvc.imap.uids import compress_uid_set, expand_uid_set, parse_copyuid
from mailsvc.imap.wire import (
    MailboxStatus,
    imap_date,
    parse_fetch,
    parse_internal_date,
    parse_list,
    parse_search,
    parse_select,
    parse_status,
    to_sexpr,
    tokens,
)


def test_fetch_with_literal_body_and_items_after_it() -> None:
    lines = [
        b"12 FETCH (UID 5 FLAGS (\\Seen $Label) MODSEQ (77) RFC822.SIZE 11 BODY[] {11}",
        bytearray(b"Hello\r\nbody"),
        b' INTERNALDATE "17-Jul-1996 02:44:25 -0700")',
        b"13 FETCH (UID 6 FLAGS ())",
    ]
    first, second = parse_fetch(lines)
    assert first.uid == 5
    assert first.flags == ("\\Seen", "$Label")
    assert first.modseq == 77
    assert first.body == b"Hello\r\nbody"
    assert first.internal_date == datetime(1996, 7, 17, 9, 44, 25, tzinfo=UTC)
    assert second.uid == 6
    assert second.flags == ()


def test_fetch_sections_and_bodystructure() -> None:
    lines = [
        b"1 FETCH (UID 9 BODY[HEADER] {8}",
        bytearray(b"A: b\r\n\r\n"),
        b' BODY[1.2] "text"'
        b' BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 1))',
    ]
    (item,) = parse_fetch(lines)
    assert item.sections == {"HEADER": b"A: b\r\n\r\n", "1.2": b"text"}
    assert item.bodystructure is not None
    assert to_sexpr(item.bodystructure) == (
        '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 1)'
    )


def test_list_with_and_without_the_list_keyword() -> None:
    mailboxes = parse_list(
        [b'(\\HasNoChildren \\Sent) "." Sent', b'LIST () "/" "Entw&APw-rfe"', b"() NIL Flat"]
    )
    assert [(m.name, m.delimiter) for m in mailboxes] == [
        ("Sent", "."), ("Entwürfe", "/"), ("Flat", None),
    ]  # fmt: skip
    assert mailboxes[0].attributes == {"\\HasNoChildren", "\\Sent"}


def test_select_response_codes_and_qresync_data() -> None:
    state = parse_select(
        [
            b"FLAGS (\\Seen)",
            b"42 EXISTS",
            b"OK [UIDVALIDITY 3857529045] UIDs valid",
            b"OK [UIDNEXT 4392] Predicted next UID",
            b"OK [HIGHESTMODSEQ 715194045007]",
            b"VANISHED (EARLIER) 41,43:45",
            b"49 FETCH (UID 4391 FLAGS (\\Seen) MODSEQ (715194045006))",
        ]
    )
    assert (state.exists, state.uidvalidity, state.uidnext) == (42, 3857529045, 4392)
    assert state.highestmodseq == 715194045007
    assert state.vanished == [41, 43, 44, 45]
    assert state.changed[0].uid == 4391


def test_search_and_esearch() -> None:
    assert parse_search([b"SEARCH 2 3 7"]) == [2, 3, 7]
    assert parse_search([b'ESEARCH (TAG "A1") UID ALL 1:3,9']) == [1, 2, 3, 9]


def test_uid_sets_round_trip_and_refuse_nonsense() -> None:
    assert compress_uid_set([7, 1, 2, 3, 9, 10]) == "1:3,7,9:10"
    assert expand_uid_set("1:3,7,10:9") == [1, 2, 3, 7, 9, 10]
    with pytest.raises(ImapProtocolError):
        expand_uid_set("1:*")
    with pytest.raises(ImapProtocolError):
        expand_uid_set("1:4000000000")


def test_modified_utf7_names() -> None:
    for name in ("Entwürfe", "日本語", "A&B", "plain"):
        assert names.decode(names.encode(name)) == name
    assert names.encode("A&B") == "A&-B"
    assert names.decode("bad&~-") == "bad&~-"  # invalid stays as sent


def test_quote_refuses_line_breaks() -> None:
    assert names.quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    with pytest.raises(ValueError, match="CR, LF"):
        names.quote("x\r\nA1 DELETE INBOX")


def test_dates() -> None:
    assert imap_date(date(2026, 2, 1)) == "1-Feb-2026"
    assert parse_internal_date("garbage") is None
    assert parse_internal_date(" 1-Jan-2026 00:00:00 +0100") == datetime(
        2025, 12, 31, 23, 0, tzinfo=UTC
    )


def test_tokenizer_survives_unbalanced_input() -> None:
    assert tokens([b"(a (b c) d"]) == [["a", ["b", "c"], "d"]]
    assert tokens([b"a) b"]) == ["a", "b"]


def test_status_answers_from_list_status() -> None:
    statuses = parse_status(
        [
            b'LIST () "." "Entw&APw-rfe"',
            b'STATUS "Entw&APw-rfe" (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 77 UNSEEN 1'
            b" HIGHESTMODSEQ 12)",
            b"* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 5)",
            b"STATUS broken",
        ]
    )
    assert statuses["Entwürfe"] == MailboxStatus(3, 9, 77, 1, 12)
    assert statuses["INBOX"] == MailboxStatus(0, 1, 5, None, None)
    assert set(statuses) == {"Entwürfe", "INBOX"}


def test_copyuid_maps_old_to_new_uids() -> None:
    lines = [b"OK [COPYUID 1700000000 3:5,9 101:104] Moved UIDs."]
    assert parse_copyuid(lines) == (1700000000, {3: 101, 4: 102, 5: 103, 9: 104})
    assert parse_copyuid([b"OK Moved."]) is None
    assert parse_copyuid([b"OK [COPYUID 1 1:3 7:8] uneven"]) is None


# -- hostile server input: a malformed number is a protocol error or is ignored, never
# silently read as another number, and nothing but ImapProtocolError escapes.


def test_search_is_numbers_optionally_followed_by_modseq() -> None:
    assert parse_search([b"* SEARCH 1 2 3"]) == [1, 2, 3]
    assert parse_search([b"SEARCH 2 5 (MODSEQ 917162500)"]) == [2, 5]
    assert parse_search([b"* SEARCH", b"SEARCH "]) == []
    assert parse_search([b"3 EXISTS", b"SEARCH 4"]) == [4]


@pytest.mark.parametrize(
    "line",
    [
        b"* SEARCH 1 2 3abc",  # would make UID 3 look expunged
        b"SEARCH 1 \xc2\xb2",  # a Unicode digit
        b"SEARCH 1 -2",
        b"SEARCH 1 (MODSEQ x)",
        b"SEARCH 1 (MODSEQ 5) 7",
    ],
)
def test_search_refuses_anything_but_numbers(line: bytes) -> None:
    with pytest.raises(ImapProtocolError, match="SEARCH"):
        parse_search([line])


def test_esearch_all_without_a_set_is_refused() -> None:
    with pytest.raises(ImapProtocolError, match="ESEARCH ALL"):
        parse_search([b'ESEARCH (TAG "A1") UID ALL'])
    assert parse_search([b'ESEARCH (TAG "A1") UID COUNT 0']) == []


@pytest.mark.parametrize("uid", [b"\xc2\xb2", b"\xd9\xa3", b"5x", b"-5"])
def test_fetch_with_a_malformed_uid_is_refused(uid: bytes) -> None:
    # "²" made int() raise ValueError; "٣" (Arabic-Indic three) was read as UID 3.
    with pytest.raises(ImapProtocolError, match="UID"):
        parse_fetch([b"1 FETCH (UID " + uid + b" FLAGS ())"])


def test_fetch_ignores_malformed_optional_numbers() -> None:
    (item,) = parse_fetch(
        [b"1 FETCH (UID 7 MODSEQ (\xc2\xb2) RFC822.SIZE \xd9\xa3 X-GM-THRID 12x FLAGS ())"]
    )
    assert (item.uid, item.modseq, item.size, item.gm_thrid) == (7, None, None, None)


def test_fetch_with_a_malformed_sequence_number_is_refused() -> None:
    # Skipping it would lose the item: its message would never be fetched.
    with pytest.raises(ImapProtocolError, match="FETCH"):
        parse_fetch([b"1x FETCH (UID 5 FLAGS ())"])


def test_status_with_a_malformed_number_is_dropped() -> None:
    statuses = parse_status(
        [
            b"STATUS INBOX (MESSAGES \xc2\xb2 UIDNEXT 9 UIDVALIDITY 5)",
            # Read as "no CONDSTORE", this would let a flag change go unnoticed.
            b"STATUS Sent (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 5 HIGHESTMODSEQ 12x)",
            b"STATUS Drafts (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 5 HIGHESTMODSEQ)",
            b"STATUS Trash (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 5 APPENDLIMIT NIL)",
        ]
    )
    assert statuses == {"Trash": MailboxStatus(1, 2, 5, None, None)}


@pytest.mark.parametrize("text", ["1:\u00b2", "\u0663", "1,,3", ",", "1:"])
def test_uid_sets_refuse_unicode_digits_and_empty_parts(text: str) -> None:
    with pytest.raises(ImapProtocolError):
        expand_uid_set(text)


@pytest.mark.parametrize(
    "line",
    [
        b"OK [UIDVALIDITY 12x] UIDs valid",  # None would reset the mailbox: all rows deleted
        b"OK [UIDVALIDITY \xd9\xa3] UIDs valid",
        b"OK [UIDNEXT] Predicted next UID",
        b"OK [HIGHESTMODSEQ -1]",
        b"4x EXISTS",
    ],
)
def test_select_with_a_malformed_number_is_refused(line: bytes) -> None:
    with pytest.raises(ImapProtocolError):
        parse_select([b"42 EXISTS", b"OK [UIDVALIDITY 7] UIDs valid", line])


def test_internal_date_with_unicode_digits_is_malformed() -> None:
    assert parse_internal_date("\u0661-Jan-2026 00:00:00 +0100") is None


def test_deeply_nested_bodystructure_renders_without_recursion() -> None:
    depth = 100_000
    (nested,) = tokens([b"(" * depth + b"1" + b")" * depth])
    assert to_sexpr(nested) == "(" * depth + "1" + ")" * depth
    assert to_sexpr(["\u00b2", "12"]) == '("\u00b2" 12)'
