"""Messages as the API answers them: the list view of a row, and a whole message
with its sanitized HTML and reply text."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import Row

from mailsvc.message import schemas
from mailsvc.mime.reply_text import reply_text
from mailsvc.mime.sanitize import SanitizedHtml, sanitize_html
from mailsvc.models import Message

# Reply-text extraction is regular-expression work on the whole body; past this it
# is not worth the CPU (and long texts are rarely replies worth trimming).
_REPLY_TEXT_MAX_CHARS = 200_000


def _address(value: dict[str, Any]) -> schemas.AddressOut:
    return schemas.AddressOut(name=value.get("name"), address=value.get("address") or "")


def _addresses(values: Sequence[dict[str, Any]] | None) -> list[schemas.AddressOut]:
    return [_address(v) for v in values or ()]


def summary_from_row(row: Row[Any] | Message) -> schemas.MessageSummary:
    """The list view of a message, from a summary row or a whole `Message`."""
    flags = list(row.flags or ())
    senders = row.from_ or []
    return schemas.MessageSummary(
        id=row.id,
        account_id=row.account_id,
        mailbox_id=row.mailbox_id,
        thread_id=row.thread_id,
        subject=row.subject,
        from_=_address(senders[0]) if senders else None,
        to=_addresses(row.to),
        cc=_addresses(row.cc),
        snippet=row.snippet,
        date=row.date,
        received_at=row.internal_date,
        flags=flags,
        labels=None if row.labels is None else list(row.labels),
        unread="\\Seen" not in flags,
        flagged="\\Flagged" in flags,
        has_attachments=row.has_attachments,
        size=row.size,
    )


def attachment_url(message_id: uuid.UUID, attachment_id: uuid.UUID) -> str:
    return f"/api/messages/{message_id}/attachments/{attachment_id}"


def _bodies(
    row: asyncpg.Record, attachments: list[dict[str, Any]], *, allow_remote: bool
) -> tuple[SanitizedHtml | None, str | None]:
    """The sanitized HTML body and the reply text of `row` (CPU work: run off the
    event loop, both in one hop)."""
    urls = {
        attachment["content_id"].strip("<>").lower(): attachment_url(
            row["id"], uuid.UUID(attachment["id"])
        )
        for attachment in attachments
        if attachment["content_id"]
    }
    sanitized = None
    if row["html_body"]:
        sanitized = sanitize_html(
            row["html_body"],
            cid_url=lambda cid: urls.get(cid.strip("<>").lower()),
            allow_remote=allow_remote,
        )
    text = row["text_body"]
    return sanitized, reply_text(text[:_REPLY_TEXT_MAX_CHARS]) if text else None


async def message_out(row: asyncpg.Record, *, allow_remote: bool) -> schemas.MessageOut:
    """The API body of a whole message (`MessageReads.message`'s row)."""
    attachments: list[dict[str, Any]] = json.loads(row["attachments"])
    sanitized, reply = None, None
    if row["html_body"] or row["text_body"]:
        sanitized, reply = await asyncio.to_thread(
            _bodies, row, attachments, allow_remote=allow_remote
        )
    message_id = row["id"]
    senders = json.loads(row["from_"])
    flags = list(row["flags"] or ())
    return schemas.MessageOut(
        id=message_id,
        account_id=row["account_id"],
        mailbox_id=row["mailbox_id"],
        thread_id=row["thread_id"],
        subject=row["subject"],
        from_=_address(senders[0]) if senders else None,
        to=_addresses(json.loads(row["to"])),
        cc=_addresses(json.loads(row["cc"])),
        snippet=row["snippet"],
        date=row["date"],
        received_at=row["internal_date"],
        flags=flags,
        labels=None if row["labels"] is None else list(row["labels"]),
        unread="\\Seen" not in flags,
        flagged="\\Flagged" in flags,
        has_attachments=row["has_attachments"],
        size=row["size"],
        from_all=_addresses(senders),
        bcc=_addresses(json.loads(row["bcc"])),
        sender=_addresses(json.loads(row["sender"])),
        reply_to=_addresses(json.loads(row["reply_to"])),
        message_id=row["message_id_header"],
        in_reply_to=row["in_reply_to"],
        references=list(row["references"] or ()),
        text_body=row["text_body"],
        html_body=sanitized.html if sanitized else None,
        remote_content_blocked=bool(sanitized and sanitized.remote_content_blocked),
        reply_text=reply,
        attachments=[
            schemas.AttachmentOut(
                id=attachment["id"],
                filename=attachment["filename"],
                content_type=attachment["content_type"],
                size=attachment["size"],
                content_id=attachment["content_id"],
                inline=attachment["is_inline"],
                download_url=attachment_url(message_id, uuid.UUID(attachment["id"])),
            )
            for attachment in attachments
        ],
        parse_error=row["parse_error"],
        gmail_message_id=_decimal(row["gm_message_id"]),
        gmail_thread_id=_decimal(row["gm_thread_id"]),
    )


def _decimal(gmail_id: int | None) -> str | None:
    # A string, as every id of the API: JavaScript numbers lose digits past 2**53.
    return None if gmail_id is None else str(gmail_id)
