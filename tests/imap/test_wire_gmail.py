"""Gmail's FETCH items (X-GM-EXT-1) as the wire parser reads them.

No Gmail server is reachable from the tests, so the answers here are the forms
Google documents at https://developers.google.com/gmail/imap/imap-extensions (the
examples of X-GM-MSGID, X-GM-THRID and X-GM-LABELS, and of STORE +X-GM-LABELS),
plus the other forms the IMAP grammar allows a server to send them in (quoted
strings with escapes, literals, modified UTF-7) and garbage.
"""

from __future__ import annotations

import pytest

from mailsvc.imap import names
from mailsvc.imap.wire import MAX_LABEL_CHARS, parse_fetch


def test_documented_msgid_thrid_and_labels() -> None:
    items = parse_fetch(
        [
            b"* 1 FETCH (X-GM-MSGID 1278455344230334865)",
            b"* 1 FETCH (X-GM-THRID 1266894439832287888 UID 1)",
            b'* 1 FETCH (X-GM-LABELS (\\Inbox \\Sent Important "Muy Importante"))',
            b"* 2 FETCH (X-GM-LABELS (foo))",
            b"* 3 FETCH (X-GM-LABELS ())",
            b"* 4 FETCH (X-GM-LABELS (\\Drafts))",
        ]
    )
    assert items[0].gm_msgid == 1278455344230334865
    assert (items[1].gm_thrid, items[1].uid) == (1266894439832287888, 1)
    assert items[2].gm_labels == ("Important", "Muy Importante", "\\Inbox", "\\Sent")
    assert items[3].gm_labels == ("foo",)
    assert items[4].gm_labels == ()
    assert items[5].gm_labels == ("\\Drafts",)
    # Not asked for is not "no labels": an item without X-GM-LABELS leaves them unknown.
    assert items[0].gm_labels is None
    assert items[2].gm_msgid is items[2].gm_thrid is None


def test_documented_store_answer() -> None:
    # a011 STORE 1 +X-GM-LABELS (foo)
    (item,) = parse_fetch(
        [b'* 1 FETCH (X-GM-LABELS (\\Inbox \\Sent Important "Muy Importante" foo))']
    )
    assert item.gm_labels == ("Important", "Muy Importante", "\\Inbox", "\\Sent", "foo")


def test_everything_of_a_sync_fetch_in_one_answer() -> None:
    # What the sync asks Gmail for a new message, UID first or last alike.
    (item,) = parse_fetch(
        [
            b"* 7 FETCH (X-GM-THRID 1266894439832287888 X-GM-MSGID 1278455344230334865 "
            b'X-GM-LABELS ("\\\\Important" "\\\\Starred" Work) UID 42 MODSEQ (9981) '
            b'FLAGS (\\Seen \\Flagged) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
            b"RFC822.SIZE 11 BODY[] {11}",
            bytearray(b"Hello\r\nbody"),
            b")",
        ]
    )
    assert item.uid == 42
    assert item.gm_msgid == 1278455344230334865
    assert item.gm_thrid == 1266894439832287888
    # Quoted system labels ("\\Important") are unescaped to the backslash form.
    assert item.gm_labels == ("Work", "\\Important", "\\Starred")
    assert item.flags == ("\\Seen", "\\Flagged")
    assert bytes(item.body or b"") == b"Hello\r\nbody"


def test_labels_sent_as_literals() -> None:
    (item,) = parse_fetch(
        [
            b"* 3 FETCH (UID 5 X-GM-LABELS ({14}",
            bytearray(b"Muy Importante"),
            b" \\Inbox {21}",
            bytearray(b'Quote " and \\ inside'),
            b") FLAGS ())",
        ]
    )
    assert item.uid == 5
    assert item.gm_labels == ("Muy Importante", 'Quote " and \\ inside', "\\Inbox")
    assert item.flags == ()


@pytest.mark.parametrize(
    "label",
    ["Muy Importante/Año", "工作", "Très important", "R&D", "Ünïcödé/子"],
)
def test_non_ascii_labels_are_decoded_from_modified_utf7(label: str) -> None:
    wire = names.quote(names.encode(label)).encode()
    (item,) = parse_fetch([b"* 1 FETCH (UID 1 X-GM-LABELS (" + wire + b" \\Inbox))"])
    assert item.gm_labels == tuple(sorted((label, "\\Inbox")))


def test_labels_are_deduplicated_and_sorted() -> None:
    (item,) = parse_fetch([b'* 1 FETCH (UID 1 X-GM-LABELS (b a "b" \\Inbox a))'])
    assert item.gm_labels == ("\\Inbox", "a", "b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"NIL", None),  # not a list: as if not sent
        (b"Work", None),
        (b"(NIL Work)", ("Work",)),  # NIL is no label
        (b"((nested) Work)", ("Work",)),
        (b'("" Work)', ("Work",)),  # an empty name is no label
        (b'("a\\x00b" Work)', ("Work",)),
        (b'("&AAA-" Work)', ("Work",)),  # NUL hidden in modified UTF-7
        (b'("&broken" Work)', ("&broken", "Work")),  # invalid mUTF-7 stays as sent
        (b"(\\Inbox", ("\\Inbox",)),  # an unclosed list
    ],
)
def test_garbage_labels(value: bytes, expected: tuple[str, ...] | None) -> None:
    (item,) = parse_fetch([b"* 1 FETCH (UID 1 X-GM-LABELS " + value.replace(b"\\x00", b"\x00")])
    assert item.uid == 1
    assert item.gm_labels == expected


def test_overlong_labels_are_left_out() -> None:
    longest = "x" * MAX_LABEL_CHARS
    (item,) = parse_fetch(
        [
            b"* 1 FETCH (UID 1 X-GM-LABELS ({1001}",
            bytearray(b"y" * (MAX_LABEL_CHARS + 1)),
            b" " + longest.encode() + b" {6000001}",
            bytearray(b"z" * 6_000_001),
            b" Work))",
        ]
    )
    assert item.gm_labels == ("Work", longest)


@pytest.mark.parametrize(
    "value",
    [
        b"12x",
        b"\xc2\xb2",
        b"-5",
        b"0",
        b"9223372036854775808",  # 2**63: beyond PostgreSQL's bigint
        b"18446744073709551616",  # 2**64
        b"9" * 5000,  # int() would raise ValueError past 4,300 digits
        b"(1)",
        b"NIL",
    ],
)
def test_garbage_ids_are_read_as_absent(value: bytes) -> None:
    (item,) = parse_fetch(
        [b"* 1 FETCH (UID 1 X-GM-MSGID " + value + b" X-GM-THRID " + value + b")"]
    )
    assert (item.uid, item.gm_msgid, item.gm_thrid) == (1, None, None)


def test_largest_id_is_kept() -> None:
    (item,) = parse_fetch([b"* 1 FETCH (UID 1 X-GM-MSGID 9223372036854775807)"])
    assert item.gm_msgid == 2**63 - 1


def test_an_overlong_uid_is_refused_not_a_crash() -> None:
    from mailsvc.imap.errors import ImapProtocolError

    with pytest.raises(ImapProtocolError, match="UID"):
        parse_fetch([b"* 1 FETCH (UID " + b"9" * 5000 + b")"])
