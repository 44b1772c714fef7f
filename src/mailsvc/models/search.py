"""The PostgreSQL search backend's tables (`mailsvc.search.postgres`).

`message_search` holds one narrow row per indexed message: the plain columns a
search filters on and four text-search vectors, so a search never reads the wide
`messages` row until its page is chosen. `search_index_states` says whether a
tenant's rows can answer searches.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, one_of

SEARCH_INDEX_STATES = ("ready", "building")
"""A tenant without a `search_index_states` row is ready (new tenants never wait)."""


class MessageSearch(Base):
    """The search document of one message, written by the indexer only.

    No foreign key to `messages`: the indexer removes a row when its message goes
    (the queue tells it), every hit is joined against `messages` before it leaves the
    API, and a key would make a batch fail whenever a message is deleted between the
    indexer reading it and writing its document.

    The vectors are built by `mailsvc.search.postgres` from the words of
    `mailsvc.search.words` (never by PostgreSQL's parser), with a gap of one position
    between fields and between addresses, so a phrase never spans two of them.
    """

    __tablename__ = "message_search"
    __table_args__ = (
        # Pages of `newest` and `oldest`, keyset on (received_at, message_id).
        Index(
            "ix_message_search_tenant_id_received_at_message_id",
            "tenant_id",
            "received_at",
            "message_id",
        ),
        # GIN indexes cannot lead with tenant_id without the btree_gin extension; the
        # tenant condition is checked on the rows they find.
        Index("ix_message_search_document", "document", postgresql_using="gin"),
        Index("ix_message_search_subject_words", "subject_words", postgresql_using="gin"),
        Index("ix_message_search_from_words", "from_words", postgresql_using="gin"),
        Index("ix_message_search_to_words", "to_words", postgresql_using="gin"),
    )

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID]
    mailbox_id: Mapped[uuid.UUID]
    thread_id: Mapped[uuid.UUID | None]
    received_at: Mapped[datetime]
    seen: Mapped[bool]
    flagged: Mapped[bool]
    has_attachments: Mapped[bool]
    # Gmail's labels (`messages.labels`), for `label:` and `?label=`; NULL elsewhere.
    labels: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    document: Mapped[str] = mapped_column(
        TSVECTOR,
        comment="subject (weight A), names and addresses (B), capped text body (C)",
    )
    subject_words: Mapped[str] = mapped_column(TSVECTOR)
    from_words: Mapped[str] = mapped_column(
        TSVECTOR, comment="each From name and address, a position apart"
    )
    to_words: Mapped[str] = mapped_column(
        TSVECTOR, comment="each To, Cc and Bcc name and address, a position apart"
    )


class SearchIndexStateRow(Base):
    """Whether a tenant's `message_search` rows can answer (`search.backend.IndexState`).

    `building` while a rebuild refills them; `schema_version` is the document format
    they were written in (`search.postgres.SCHEMA_VERSION`): an older one is a
    missing index, rebuilt.
    """

    __tablename__ = "search_index_states"
    __table_args__ = (CheckConstraint(one_of("state", SEARCH_INDEX_STATES), name="state"),)

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    schema_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
