"""From an API request to a checked `Composition`: sender, originals, attachments.

Every value a client sent passes `compose.validate` here, so a header injection or a
bad address is a 422 naming the field before anything is stored or sent.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.compose.model import AttachmentSpec, Composition, Mailbox, OriginalMessage
from mailsvc.compose.validate import CompositionError, check_composition
from mailsvc.errors import FieldError, UnprocessableError
from mailsvc.kit.resources import Resources
from mailsvc.message.repository import MessageRepository
from mailsvc.message.stream import StreamService
from mailsvc.models import Account, Message
from mailsvc.outbox import schemas

# compose.validate names fields as the Composition does; the API names some otherwise.
_API_FIELDS = {
    "text_body": "text",
    "html_body": "html",
    "reply_to_original": "in_reply_to",
    "from_": "from",
}


def invalid(field: str, message: str) -> UnprocessableError:
    """A 422 naming one field of the request body."""
    return UnprocessableError(
        f"{field}: {message}",
        code="invalid_message",
        errors=[FieldError(field=f"body.{field}", message=message)],
    )


def api_field(field: str) -> str:
    head, dot, rest = field.partition(".")
    bracket = head.find("[")
    name, index = (head, "") if bracket < 0 else (head[:bracket], head[bracket:])
    return _API_FIELDS.get(name, name) + index + dot + rest


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked composition, and the message of ours it answers (if a reply)."""

    composition: Composition
    answers_message_id: uuid.UUID | None


def decode_attachments(attachments: Sequence[schemas.AttachmentIn]) -> list[AttachmentSpec]:
    specs: list[AttachmentSpec] = []
    for index, attachment in enumerate(attachments):
        try:
            content = base64.b64decode(attachment.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid(f"attachments[{index}].content_base64", "is not base64") from exc
        specs.append(
            AttachmentSpec(
                filename=attachment.filename,
                content_type=attachment.content_type,
                content=content,
                content_id=attachment.content_id,
                inline=attachment.content_id is not None,
            )
        )
    return specs


def _mailboxes(values: Sequence[schemas.AddressIn]) -> tuple[Mailbox, ...]:
    return tuple(Mailbox(address=value.address, name=value.name) for value in values)


def _sender(account: Account, requested: schemas.AddressIn | None) -> Mailbox:
    if requested is None:
        return Mailbox(address=account.email, name=account.display_name)
    allowed = {account.email.lower()} | {
        str(alias).lower() for alias in (account.send_options or {}).get("aliases", [])
    }
    if requested.address.strip().lower() not in allowed:
        raise invalid("from.address", "is neither the account's address nor one of its aliases")
    return Mailbox(address=requested.address, name=requested.name)


def _original(message: Message, raw: bytes | None = None) -> OriginalMessage:
    return OriginalMessage(
        message_id=message.message_id_header,
        references=tuple(message.references or ()),
        subject=message.subject,
        from_=tuple(Mailbox(a["address"] or "", a.get("name")) for a in message.from_ or []),
        to=tuple(Mailbox(a["address"] or "", a.get("name")) for a in message.to or []),
        date=message.date,
        text_body=message.text_body,
        raw=raw,
    )


async def original_message(
    messages: MessageRepository, account: Account, message_id: uuid.UUID | None, field: str
) -> Message | None:
    """The message of ours a reply or forward names: the tenant's, the same account's."""
    if message_id is None:
        return None
    message = await messages.get(message_id)
    if message is None:
        raise invalid(field, "no such message")
    if message.account_id != account.id:
        raise invalid(field, "the message belongs to another account")
    return message


class MessagePreparer:
    """Builds checked compositions for one tenant."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._messages = MessageRepository(session, tenant_id)
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources

    async def prepare(
        self,
        account: Account,
        fields: schemas.MessageFields,
        attachments: Sequence[AttachmentSpec],
    ) -> Prepared:
        """The request as a checked `Composition` (422 naming the field otherwise)."""
        reply_to = await original_message(
            self._messages, account, fields.in_reply_to, "in_reply_to"
        )
        forward = await original_message(self._messages, account, fields.forward_of, "forward_of")
        forwarded = None
        if forward is not None:
            raw = None if fields.forward_inline else await self._raw(forward)
            forwarded = _original(forward, raw)
        composition = Composition(
            from_=_sender(account, fields.from_),
            to=_mailboxes(fields.to),
            cc=_mailboxes(fields.cc),
            bcc=_mailboxes(fields.bcc),
            reply_to=_mailboxes(fields.reply_to),
            subject=fields.subject,
            text_body=fields.text,
            html_body=fields.html,
            attachments=tuple(attachments),
            headers=dict(fields.headers),
            reply_to_original=None if reply_to is None else _original(reply_to),
            quote_original=fields.quote_original,
            forward_of=forwarded,
            forward_inline=fields.forward_inline,
        )
        try:
            checked = check_composition(
                composition, recipient_limit=self._resources.settings.send_max_recipients
            )
        except CompositionError as exc:
            raise invalid(api_field(exc.field), exc.message) from exc
        return Prepared(
            composition=checked, answers_message_id=None if reply_to is None else reply_to.id
        )

    async def _raw(self, message: Message) -> bytes:
        """The original's source, to forward it as an attachment (read from IMAP)."""
        limit = self._resources.settings.send_max_message_bytes
        if message.size > limit:
            raise invalid("forward_of", f"the message is larger than {limit} bytes")
        chunks: list[bytes] = []
        streams = StreamService(self._session, self._tenant_id, self._resources)
        download = await streams.raw(message.id)
        async for chunk in download.body:
            chunks.append(chunk)
        return b"".join(chunks)
