"""What a FETCH answer says of messages already stored: the states `SyncEngine`
hands to `mirror.server_changes.record_server_changes`. Pure."""

from __future__ import annotations

from mailsvc.imap import wire
from mailsvc.mirror.repository import ReportedState
from mailsvc.mirror.server_changes import session_free_flags

# A Gmail row stored before labels were mirrored gets them (and Gmail's ids) this way.
GMAIL_BACKFILL_ITEMS = "UID FLAGS X-GM-LABELS X-GM-MSGID X-GM-THRID"


def backfilled(item: wire.FetchedItem) -> ReportedState:
    """A backfilled row: its labels (none when the answer carried none, so that it is
    not backfilled again), flags and Gmail ids. Its thread stays the one it has."""
    assert item.uid is not None
    return ReportedState(
        uid=item.uid,
        flags=None if item.flags is None else session_free_flags(item.flags),
        modseq=item.modseq,
        labels=list(item.gm_labels or ()),
        gm_message_id=item.gm_msgid,
        gm_thread_id=item.gm_thrid,
    )


def reported_state(item: wire.FetchedItem, *, labels: bool) -> ReportedState:
    """What a FETCH answer says of a stored message (labels: only Gmail's, and only
    when the answer carried them)."""
    assert item.uid is not None
    flags = None if item.flags is None else session_free_flags(item.flags)
    reported = list(item.gm_labels) if labels and item.gm_labels is not None else None
    return ReportedState(uid=item.uid, flags=flags, modseq=item.modseq, labels=reported)
