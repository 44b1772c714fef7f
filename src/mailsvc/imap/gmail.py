"""Gmail's IMAP extensions (X-GM-EXT-1): the names the sync and the API share. Pure.

Gmail keeps each message once, in All Mail (or Spam, or Trash), and shows every
label as a folder: INBOX is the `\\Inbox` label, `[Gmail]/Sent Mail` the `\\Sent`
label, a folder `Work` the user label `Work`. X-GM-LABELS names a message's labels
the same way (https://developers.google.com/gmail/imap/imap-extensions).
"""

from __future__ import annotations

from typing import Final

CAPABILITY: Final = "X-GM-EXT-1"
FETCH_ITEMS: Final = "X-GM-MSGID X-GM-THRID X-GM-LABELS"
"""What a FETCH asks Gmail for beside the usual items: identity, thread, labels."""

INBOX_LABEL: Final = "\\Inbox"

STORE_ATTRIBUTES: Final = frozenset({"\\all", "\\junk", "\\trash"})
"""The special-use attributes (lower-case) of the folders that hold the messages."""

SYSTEM_LABELS: Final = {
    "\\sent": "\\Sent",
    "\\drafts": "\\Draft",
    "\\flagged": "\\Starred",
    "\\important": "\\Important",
}
"""The system label each special folder shows, by its special-use attribute."""

ROLE_LABELS: Final = {
    "inbox": INBOX_LABEL,
    "sent": "\\Sent",
    "drafts": "\\Draft",
    "flagged": "\\Starred",
}
"""The label a mailbox role (`mailsvc.imap.mailboxes`) stands for on Gmail: a list of
`?mailbox=inbox` there lists All Mail's messages labelled `\\Inbox`."""
