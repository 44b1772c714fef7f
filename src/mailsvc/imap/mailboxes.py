"""What a LIST entry means: its role (inbox, sent, drafts, ...) and whether it can be selected."""

from __future__ import annotations

from mailsvc.imap.connection import ImapConnection
from mailsvc.imap.wire import ListedMailbox

_ROLE_ATTRIBUTES = {
    "\\sent": "sent",
    "\\drafts": "drafts",
    "\\trash": "trash",
    "\\junk": "junk",
    "\\archive": "archive",
    "\\all": "all",
    "\\flagged": "flagged",
}
# Servers without SPECIAL-USE (RFC 6154) still name these folders predictably.
_ROLE_NAMES = {
    "sent": "sent", "sent items": "sent", "sent messages": "sent", "sent mail": "sent",
    "gesendet": "sent", "gesendete objekte": "sent", "envoyés": "sent",
    "drafts": "drafts", "draft": "drafts", "entwürfe": "drafts", "brouillons": "drafts",
    "trash": "trash", "deleted items": "trash", "deleted messages": "trash", "bin": "trash",
    "papierkorb": "trash", "corbeille": "trash",
    "junk": "junk", "spam": "junk", "junk e-mail": "junk", "junk email": "junk",
    "bulk mail": "junk",
    "archive": "archive", "archives": "archive", "archiv": "archive",
}  # fmt: skip
_UNSELECTABLE = {"\\noselect", "\\nonexistent"}


def mailbox_role(mailbox: ListedMailbox, *, by_name: bool = True) -> str | None:
    """API role of a mailbox: `inbox`, a special-use role, or a well-known name's.

    `by_name=False` reads the attributes only: Gmail marks every special folder, and
    a folder there merely called "Archive" is a user label, not an archive.
    """
    if mailbox.name.upper() == "INBOX":
        return "inbox"
    for attribute in mailbox.attributes:
        role = _ROLE_ATTRIBUTES.get(attribute.lower())
        if role is not None:
            return role
    if not by_name:
        return None
    leaf = mailbox.name.rsplit(mailbox.delimiter, 1)[-1] if mailbox.delimiter else mailbox.name
    return _ROLE_NAMES.get(leaf.strip().lower())


def is_selectable(mailbox: ListedMailbox) -> bool:
    return not any(a.lower() in _UNSELECTABLE for a in mailbox.attributes)


async def mailbox_on_server(connection: ImapConnection, role: str) -> str | None:
    """The server's selectable mailbox for `role`, as it lists them now.

    Asked of the server, not the mirror: an account used before its first sync has
    no mailboxes stored yet. A special-use attribute (e.g. `\\Sent`) outranks a
    folder that is merely called so.
    """
    candidates = [
        listed
        for listed in await connection.list_mailboxes()
        if is_selectable(listed) and mailbox_role(listed) == role
    ]
    candidates.sort(key=lambda listed: f"\\{role}" not in {a.lower() for a in listed.attributes})
    return candidates[0].name if candidates else None
