"""What a list or a search asks for, as the message read path and every search
backend understand it. Pure: no SQL, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Order = Literal["newest", "oldest", "relevance"]
"""Page order: received time descending or ascending, or relevance (searches only)."""


@dataclass(frozen=True, slots=True, order=True)
class LabelFolder:
    """A Gmail label folder chosen as a mailbox: its messages are the account's rows
    carrying the label (the folder itself holds none; mailsvc.sync.plan)."""

    account_id: uuid.UUID
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFilter:
    """Which messages a list or search returns; unset fields do not filter.

    `text` is the free text of a parsed search (`search.query.SearchQuery.text`, in
    websearch syntax); `from_`, `to` and `subject` (and their `not_` forms) are the
    values of the `from:`, `to:` and `subject:` operators. Those six and `text` are
    the full-text part, answered by the search backend; the rest are plain columns.

    The chosen mailboxes are `mailbox_ids` and `label_folders` together: a message
    matches when it is in one of the mailboxes or, on Gmail, carries the label of one
    of the label folders. `label_folders` counts only when `mailbox_ids` is set (to
    an empty tuple when every chosen mailbox is a label folder). `labels` are Gmail
    labels a message must all carry (`?label=`).
    """

    account_id: uuid.UUID | None = None
    mailbox_ids: tuple[uuid.UUID, ...] | None = None
    label_folders: tuple[LabelFolder, ...] = ()
    labels: tuple[str, ...] = ()
    thread_id: uuid.UUID | None = None
    unread: bool | None = None
    flagged: bool | None = None
    has_attachments: bool | None = None
    from_: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()
    not_from: tuple[str, ...] = ()
    not_to: tuple[str, ...] = ()
    not_subject: tuple[str, ...] = ()
    received_after: datetime | None = None
    received_before: datetime | None = None
    text: str = ""

    @property
    def searches(self) -> bool:
        """Whether a full-text part is set, so the search backend must answer."""
        return bool(
            self.text
            or self.from_
            or self.to
            or self.subject
            or self.not_from
            or self.not_to
            or self.not_subject
        )


def labels_by_accounts(folders: tuple[LabelFolder, ...]) -> dict[str, list[uuid.UUID]]:
    """Label folders grouped by label: each label with the accounts whose folder it is.

    Every backend compiles the folders so (one condition per distinct label, usually
    one), in label order so that statement texts repeat."""
    grouped: dict[str, list[uuid.UUID]] = {}
    for folder in sorted(set(folders), key=lambda folder: (folder.label, folder.account_id)):
        grouped.setdefault(folder.label, []).append(folder.account_id)
    return grouped


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: its last row's sort key (received time, or relevance
    score) and id, the tie-breaker."""

    key: datetime | float
    id: uuid.UUID
