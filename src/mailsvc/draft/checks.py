"""A draft's values checked one by one, as they will be stored.

A draft may be unfinished, so nothing is required but the account: recipients,
subject and body can come later. What is given must be safe and valid already (a
header value with CR/LF, a bad address, a custom header off the allow-list, a
sender that is not the account's, an original of another account are a 422
naming the field), so that a stored draft never holds what could not be sent.
The whole message is checked once more when it is sent (`MessagePreparer.prepare`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.compose.model import Mailbox
from mailsvc.compose.validate import (
    MAX_SUBJECT_CHARS,
    CompositionError,
    check_body,
    check_custom_headers,
    check_header_value,
    check_mailbox,
    check_mailboxes,
)
from mailsvc.draft import schemas
from mailsvc.message.repository import MessageRepository
from mailsvc.models import Account, Draft
from mailsvc.models.message import Address
from mailsvc.outbox.prepare import invalid, original_message
from mailsvc.outbox.schemas import AddressIn


def _stored(mailbox: Mailbox) -> Address:
    return {"name": mailbox.name, "address": mailbox.address}


def _mailboxes(values: Sequence[AddressIn]) -> list[Mailbox]:
    return [Mailbox(address=value.address, name=value.name) for value in values]


def allowed_senders(account: Account) -> set[str]:
    """The addresses an account may send as, in lower case."""
    aliases = (account.send_options or {}).get("aliases", [])
    return {account.email.lower()} | {str(alias).lower() for alias in aliases}


class DraftChecker:
    """Turns a `DraftIn` into the column values of a draft, or a 422."""

    def __init__(self, session: AsyncSession, tenant_id: str, *, recipient_limit: int) -> None:
        self._messages = MessageRepository(session, tenant_id)
        self._recipient_limit = recipient_limit

    async def values(
        self, account: Account, body: schemas.DraftIn, *, current: Draft | None = None
    ) -> dict[str, Any]:
        """The draft's columns for `body`; `current` is the draft being replaced."""
        try:
            values = self._content(account, body)
        except CompositionError as exc:
            raise invalid(exc.field, exc.message) from exc
        if body.in_reply_to is not None and body.forward_of is not None:
            raise invalid("forward_of", "a message is a reply or a forward, not both")
        values.update(await self._reply(account, body.in_reply_to, current))
        forward = await original_message(self._messages, account, body.forward_of, "forward_of")
        values["forward_of_message_id"] = None if forward is None else forward.id
        values["quote_original"] = body.quote_original
        values["forward_inline"] = body.forward_inline
        return values

    def _content(self, account: Account, body: schemas.DraftIn) -> dict[str, Any]:
        sender = None
        if body.from_ is not None:
            sender = check_mailbox("from", Mailbox(body.from_.address, body.from_.name))
            if sender.address.lower() not in allowed_senders(account):
                raise CompositionError(
                    "from.address", "is neither the account's address nor one of its aliases"
                )
        seen = 0
        for name in ("to", "cc", "bcc"):
            seen += len(getattr(body, name))
            if seen > self._recipient_limit:
                raise CompositionError(
                    name, f"more than {self._recipient_limit} recipients in to, cc and bcc"
                )
        if body.subject is not None:
            check_header_value("subject", body.subject, max_chars=MAX_SUBJECT_CHARS)
        return {
            "from_": None if sender is None else _stored(sender),
            **{
                name: [_stored(m) for m in check_mailboxes(name, _mailboxes(getattr(body, name)))]
                for name in ("to", "cc", "bcc", "reply_to")
            },
            "subject": body.subject,
            "text_body": check_body("text", body.text),
            "html_body": check_body("html", body.html),
            "headers": check_custom_headers(body.headers),
        }

    async def _reply(
        self, account: Account, message_id: uuid.UUID | None, current: Draft | None
    ) -> dict[str, Any]:
        """The reply's columns: the original's headers are copied when it is set, and
        kept while `in_reply_to` stays as it is, also once the original left the mirror
        (its id then reads null)."""
        if current is not None and message_id == current.in_reply_to_message_id:
            return {}
        original = await original_message(self._messages, account, message_id, "in_reply_to")
        if original is None:
            return {"in_reply_to_message_id": None, "in_reply_to": None, "references": []}
        return {
            "in_reply_to_message_id": original.id,
            "in_reply_to": original.message_id_header,
            "references": list(original.references or ()),
        }
