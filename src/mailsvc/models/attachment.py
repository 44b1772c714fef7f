"""Attachments of stored messages: metadata only, the bytes stay on the IMAP server."""

from __future__ import annotations

import uuid

from sqlalchemy import Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, UuidPk, tenant_foreign_key


class Attachment(Base):
    """One attachment or inline part, located by its BODYSTRUCTURE section.

    Downloading fetches `BODY.PEEK[<section>]` of the message's UID and decodes it
    with `encoding`, so nothing but this row is kept.
    """

    __tablename__ = "attachments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "message_id", "section"),
        tenant_foreign_key("message_id", "messages", ondelete="CASCADE"),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    message_id: Mapped[uuid.UUID]
    # IMAP part number, e.g. "2" or "2.1" (RFC 3501 6.4.5).
    section: Mapped[str] = mapped_column(String(64))
    # Decoded from RFC 2231 / RFC 2047; NULL when the part names no file.
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    # Content-Transfer-Encoding (`base64`, `quoted-printable`, `7bit`, ...).
    encoding: Mapped[str] = mapped_column(String(32), server_default="7bit")
    # Decoded size in octets (what a download delivers); computed from the encoded
    # length for base64, estimated from BODYSTRUCTURE for messages above the size cap.
    size: Mapped[int] = mapped_column(Integer)
    # Content-ID without the angle brackets; `cid:` references in the HTML body use it.
    content_id: Mapped[str | None] = mapped_column(Text)
    is_inline: Mapped[bool] = mapped_column(server_default=false())
