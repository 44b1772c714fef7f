"""Small deterministic messages for sync tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


def make_message(
    index: int,
    *,
    subject: str | None = None,
    reply_to_id: str | None = None,
    message_id: str | None = None,
    attachment: bytes | None = None,
) -> tuple[str, bytes]:
    """(Message-ID, bytes) of a simple message; replies carry In-Reply-To/References."""
    message = EmailMessage()
    mid = message_id or make_msgid(idstring=f"m{index}", domain="example.test")
    message["Message-ID"] = mid
    message["From"] = f"Sender {index} <sender{index % 7}@example.test>"
    message["To"] = "Recipient <rcpt@example.test>"
    message["Subject"] = subject or f"Message number {index}"
    message["Date"] = format_datetime(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=index))
    if reply_to_id:
        message["In-Reply-To"] = reply_to_id
        message["References"] = reply_to_id
    message.set_content(f"Body of message {index}.\nSecond line.\n")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename=f"a{index}.bin"
        )
    return mid, message.as_bytes()
