"""Which mailboxes a Gmail account mirrors, from LIST answers in Gmail's documented form.

The listings are those of https://developers.google.com/gmail/imap/imap-extensions
(special-use attributes on the `[Gmail]` folders) and a localized one, since Gmail
names the folders in the user's language; no Gmail server is reachable here.
"""

from __future__ import annotations

import pytest

from mailsvc.imap.mailboxes import mailbox_role
from mailsvc.imap.wire import ListedMailbox, parse_list
from mailsvc.sync.plan import (
    SyncOptions,
    gmail_label,
    gmail_store_mode,
    gmail_sync_targets,
    gmail_wanted,
)

GMAIL = ("IMAP4rev1", "UNSELECT", "IDLE", "NAMESPACE", "QUOTA", "ID", "XLIST", "CHILDREN",
         "X-GM-EXT-1", "UIDPLUS", "COMPRESS=DEFLATE", "ENABLE", "MOVE", "CONDSTORE", "ESEARCH",
         "UTF8=ACCEPT", "LIST-EXTENDED", "LIST-STATUS", "LITERAL-", "SPECIAL-USE",
         "APPENDLIMIT=35651584")  # fmt: skip

# `LIST "" "*"` as Google documents it, plus user labels (one nested, one non-ASCII
# in modified UTF-7).
DOCUMENTED_LIST = [
    b'* LIST (\\HasNoChildren) "/" "INBOX"',
    b'* LIST (\\Noselect \\HasChildren) "/" "[Gmail]"',
    b'* LIST (\\HasNoChildren \\All) "/" "[Gmail]/All Mail"',
    b'* LIST (\\HasNoChildren \\Drafts) "/" "[Gmail]/Drafts"',
    b'* LIST (\\HasNoChildren \\Important) "/" "[Gmail]/Important"',
    b'* LIST (\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"',
    b'* LIST (\\HasNoChildren \\Junk) "/" "[Gmail]/Spam"',
    b'* LIST (\\HasNoChildren \\Flagged) "/" "[Gmail]/Starred"',
    b'* LIST (\\HasNoChildren \\Trash) "/" "[Gmail]/Trash"',
    b'* LIST (\\HasChildren) "/" "Clients"',
    b'* LIST (\\HasNoChildren) "/" "Clients/Acme"',
    b'* LIST (\\HasNoChildren) "/" "Muy Importante"',
    b'* LIST (\\HasNoChildren) "/" "&XeVPXA-"',
]
# The same account for a German user: the names change, the attributes do not.
LOCALIZED_LIST = [
    b'* LIST (\\HasNoChildren) "/" "INBOX"',
    b'* LIST (\\Noselect \\HasChildren) "/" "[Google Mail]"',
    b'* LIST (\\HasNoChildren \\All) "/" "[Google Mail]/Alle Nachrichten"',
    b'* LIST (\\HasNoChildren \\Drafts) "/" "[Google Mail]/Entw&APw-rfe"',
    b'* LIST (\\HasNoChildren \\Sent) "/" "[Google Mail]/Gesendet"',
    b'* LIST (\\HasNoChildren \\Junk) "/" "[Google Mail]/Spam"',
    b'* LIST (\\HasNoChildren \\Trash) "/" "[Google Mail]/Papierkorb"',
    b'* LIST (\\HasNoChildren \\Flagged) "/" "[Google Mail]/Markiert"',
]


def _labels(listing: list[bytes]) -> dict[str, str | None]:
    return {mailbox.name: gmail_label(mailbox) for mailbox in parse_list(listing)}


def test_documented_list_mirrors_all_mail_spam_and_trash_only() -> None:
    listed = parse_list(DOCUMENTED_LIST)
    assert gmail_store_mode(GMAIL, listed)
    assert _labels(DOCUMENTED_LIST) == {
        "INBOX": "\\Inbox",
        "[Gmail]": None,  # \Noselect: holds no messages
        "[Gmail]/All Mail": None,  # the store
        "[Gmail]/Drafts": "\\Draft",
        "[Gmail]/Important": "\\Important",
        "[Gmail]/Sent Mail": "\\Sent",
        "[Gmail]/Spam": None,
        "[Gmail]/Starred": "\\Starred",
        "[Gmail]/Trash": None,
        "Clients": "Clients",
        "Clients/Acme": "Clients/Acme",
        "Muy Importante": "Muy Importante",
        "工作": "工作",
    }


def test_localized_names_go_by_special_use() -> None:
    listed = parse_list(LOCALIZED_LIST)
    assert gmail_store_mode(GMAIL, listed)
    labels = _labels(LOCALIZED_LIST)
    stored = {name for name, label in labels.items() if label is None}
    assert stored == {
        "[Google Mail]",
        "[Google Mail]/Alle Nachrichten",
        "[Google Mail]/Spam",
        "[Google Mail]/Papierkorb",
    }
    assert labels["[Google Mail]/Entwürfe"] == "\\Draft"
    assert labels["[Google Mail]/Gesendet"] == "\\Sent"
    assert labels["[Google Mail]/Markiert"] == "\\Starred"


@pytest.mark.parametrize(
    ("capabilities", "listing", "expected"),
    [
        (GMAIL, DOCUMENTED_LIST, True),
        (("IMAP4rev1", "x-gm-ext-1"), DOCUMENTED_LIST, True),  # capabilities are caseless
        (("IMAP4rev1", "SPECIAL-USE"), DOCUMENTED_LIST, False),  # not Gmail
        # All Mail hidden from IMAP (a Gmail setting): folders are mirrored as such.
        (GMAIL, [line for line in DOCUMENTED_LIST if b"All Mail" not in line], False),
        (GMAIL, [b'* LIST (\\Noselect \\All) "/" "[Gmail]/All Mail"'], False),
    ],
)
def test_store_mode_needs_the_extension_and_all_mail(
    capabilities: tuple[str, ...], listing: list[bytes], expected: bool
) -> None:
    assert gmail_store_mode(capabilities, parse_list(listing)) is expected


def _wanted(options: SyncOptions, listing: list[bytes] = DOCUMENTED_LIST) -> list[str]:
    listed = parse_list(listing)
    roles = [(m, mailbox_role(m, by_name=False)) for m in listed]
    return [m.name for m in gmail_wanted(roles, options)]


def test_every_folder_is_listed_by_default() -> None:
    assert _wanted(SyncOptions()) == [m.name for m in parse_list(DOCUMENTED_LIST)]


def test_excluding_spam_and_trash_by_role() -> None:
    wanted = _wanted(SyncOptions(exclude_mailboxes=frozenset({"junk", "trash"})))
    assert "[Gmail]/Spam" not in wanted
    assert "[Gmail]/Trash" not in wanted
    assert "[Gmail]/All Mail" in wanted


def test_including_a_label_folder_mirrors_all_mail() -> None:
    # INBOX's messages live in All Mail: without it, nothing would be mirrored.
    assert _wanted(SyncOptions(include_mailboxes=frozenset({"inbox"}))) == [
        "INBOX",
        "[Gmail]/All Mail",
    ]
    assert _wanted(SyncOptions(include_mailboxes=frozenset({"Clients/Acme", "junk"}))) == [
        "[Gmail]/Spam",
        "Clients/Acme",
        "[Gmail]/All Mail",
    ]


def test_all_mail_excluded_stays_excluded() -> None:
    options = SyncOptions(
        include_mailboxes=frozenset({"INBOX"}), exclude_mailboxes=frozenset({"all"})
    )
    assert _wanted(options) == ["INBOX"]


def test_a_push_in_a_label_folder_syncs_all_mail() -> None:
    folders = ["INBOX", "[Gmail]/Sent Mail", "Work"]
    assert gmail_sync_targets(["INBOX"], label_folders=folders, all_mail="[Gmail]/All Mail") == {
        "[Gmail]/All Mail"
    }
    assert gmail_sync_targets(
        ["INBOX", "[Gmail]/Trash"], label_folders=folders, all_mail="[Gmail]/All Mail"
    ) == {"[Gmail]/All Mail", "[Gmail]/Trash"}
    assert gmail_sync_targets(["[Gmail]/Spam"], label_folders=folders, all_mail=None) == {
        "[Gmail]/Spam"
    }


def test_a_folder_named_like_a_special_one_is_a_user_label() -> None:
    # Only the attributes make a folder special: a user label may be called "Spam".
    mailbox = ListedMailbox("Spam", "Spam", "/", frozenset({"\\HasNoChildren"}))
    assert gmail_label(mailbox) == "Spam"
