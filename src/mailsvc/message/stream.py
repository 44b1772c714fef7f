"""Raw sources and attachments streamed from the account's IMAP server.

Nothing is buffered whole: chunks go from the IMAP literal through the transfer
decoder to the HTTP response as they arrive, and a slow client slows the server
side down (the IMAP socket stops being read) instead of filling memory. The
connection is opened and the first chunk awaited before the response starts, so
a refused login, a changed mailbox or an expunged message still answers with a
problem document instead of a cut-off download.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.connect import open_mailbox
from mailsvc.account.repository import AccountRepository
from mailsvc.errors import BadGatewayError, NotFoundError
from mailsvc.imap.errors import ImapCommandError, ImapConnectError
from mailsvc.kit.resources import Resources
from mailsvc.message.lookup import MessageLookup
from mailsvc.message.repository import MessageRepository
from mailsvc.mime.transfer import TransferDecoder
from mailsvc.models import Account, Mailbox, Message

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\/]')
# Downloads are never rendered in the API's origin: an attachment may be HTML or SVG
# written by anyone who can send mail.
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    "Cache-Control": "private, no-store",
}


@dataclass
class Download:
    """A response ready to stream: its body and headers."""

    body: AsyncIterator[bytes]
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def content_disposition(filename: str | None, fallback: str) -> str:
    """`attachment` with an ASCII `filename` and the exact name as RFC 6266 `filename*`."""
    name = _UNSAFE_FILENAME.sub("_", filename or "").strip() or fallback
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def media_type(value: str | None) -> str:
    """The stored content type when it is a plain `type/subtype`, else octet-stream."""
    candidate = (value or "").strip().lower()
    return candidate if _MEDIA_TYPE.fullmatch(candidate) else "application/octet-stream"


class StreamService:
    """Opens downloads of one tenant's messages."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources

    async def raw(self, message_id: uuid.UUID) -> Download:
        message = await MessageLookup(self._session, self._tenant_id).message(message_id)
        body = await self._open(message, section="", encoding=None)
        headers = {
            **_DOWNLOAD_HEADERS,
            "Content-Disposition": content_disposition(None, f"{message.id}.eml"),
        }
        return Download(body=body, media_type="message/rfc822", headers=headers)

    async def attachment(self, message_id: uuid.UUID, attachment_id: uuid.UUID) -> Download:
        lookup = MessageLookup(self._session, self._tenant_id)
        message, attachment = await lookup.attachment(message_id, attachment_id)
        body = await self._open(message, section=attachment.section, encoding=attachment.encoding)
        disposition = content_disposition(attachment.filename, f"attachment-{attachment.id}")
        headers = {**_DOWNLOAD_HEADERS, "Content-Disposition": disposition}
        return Download(body=body, media_type=media_type(attachment.content_type), headers=headers)

    async def _where(self, message: Message) -> tuple[Account, Mailbox]:
        account = await AccountRepository(self._session, self._tenant_id).get(message.account_id)
        mailbox = await MessageRepository(self._session, self._tenant_id).mailbox(
            message.mailbox_id
        )
        if account is None or mailbox is None:  # deleted meanwhile
            raise NotFoundError("message not found", code="message_not_found")
        return account, mailbox

    async def _open(
        self, message: Message, *, section: str, encoding: str | None
    ) -> AsyncIterator[bytes]:
        account, mailbox = await self._where(message)
        uid = int(message.uid)
        stack = AsyncExitStack()
        try:
            connection = await stack.enter_async_context(
                open_mailbox(self._resources, account, mailbox, readonly=True)
            )
            source = connection.stream_section(uid, section)
            stack.push_async_callback(source.aclose)
            first = await anext(source, None)
        except (ImapCommandError, ImapConnectError) as exc:
            await stack.aclose()
            raise BadGatewayError(str(exc), code="imap_refused") from exc
        except BaseException:
            await stack.aclose()
            raise
        if first is None:
            await stack.aclose()
            raise NotFoundError(
                "the message is no longer on the server", code="message_gone_from_server"
            )
        return _decoded(first, source, TransferDecoder(encoding), stack)


async def _decoded(
    first: bytes, rest: AsyncIterator[bytes], decoder: TransferDecoder, stack: AsyncExitStack
) -> AsyncIterator[bytes]:
    try:
        if chunk := decoder.feed(first):
            yield chunk
        async for raw in rest:
            if chunk := decoder.feed(raw):
                yield chunk
        if chunk := decoder.finish():
            yield chunk
    finally:
        await stack.aclose()
