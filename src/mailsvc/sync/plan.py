"""Pure decisions of the sync engine: which mailboxes, and what to do in each.

Nothing here does I/O, so every edge case of RFC 3501/4549/7162 is a unit test.

Per mailbox, from what is stored (`LocalMailbox`) and what SELECT said
(`wire.SelectedState`), `plan_mailbox` decides:

    UIDVALIDITY changed (or first sync)  -> reset: drop stored rows, fetch everything
    server UIDNEXT > stored uidnext       -> fetch new UIDs  [stored uidnext, *]
    CONDSTORE and stored modseq           -> flag changes   CHANGEDSINCE stored modseq
    no CONDSTORE                          -> flag changes   full UID FLAGS listing
    QRESYNC                               -> deletions      VANISHED from SELECT
    otherwise                             -> deletions      UID SEARCH ALL diff, only
                                                            when the counts disagree
    nothing changed (UIDNEXT, MODSEQ, counts equal) -> nothing at all

A stored `uidnext` means "every message below it is stored"; it advances with each
stored batch, so a crash resumes where it stopped.

Gmail (`X-GM-EXT-1` with an `\\All` mailbox listed) keeps each message once, in All
Mail (or Spam, or Trash), and shows each label as a folder holding the same message
again. Such an account mirrors only that store (`gmail_label` is None for it); every
other folder is listed as the label it stands for and never fetched, so a message
is one row however many labels it has (its `X-GM-LABELS` are stored on the row).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from mailsvc.imap import gmail
from mailsvc.imap.wire import ListedMailbox, SelectedState


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """What of an account to mirror (`accounts.sync_options`)."""

    include_mailboxes: frozenset[str] | None = None
    exclude_mailboxes: frozenset[str] = frozenset()
    since: date | None = None
    max_messages_per_mailbox: int | None = None
    events_for_existing: bool = False

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> SyncOptions:
        """The options of an `accounts.sync_options` value (validated when it was saved)."""
        since = raw.get("since")
        include = raw.get("include_mailboxes")
        return cls(
            include_mailboxes=frozenset(include) if include else None,
            exclude_mailboxes=frozenset(raw.get("exclude_mailboxes") or ()),
            since=date.fromisoformat(since) if isinstance(since, str) else None,
            max_messages_per_mailbox=raw.get("max_messages_per_mailbox"),
            events_for_existing=bool(raw.get("events_for_existing", False)),
        )

    def wants(self, mailbox: ListedMailbox, role: str | None) -> bool:
        """Whether a mailbox is mirrored; names or roles (`sent`, `junk`) both match."""
        keys = {mailbox.name, *([role] if role else [])}
        if self.include_mailboxes is not None and not keys & self.include_mailboxes:
            return False
        return not keys & self.exclude_mailboxes


_UNSELECTABLE = frozenset({"\\noselect", "\\nonexistent"})


def _attributes(mailbox: ListedMailbox) -> frozenset[str]:
    return frozenset(attribute.lower() for attribute in mailbox.attributes)


def gmail_store_mode(capabilities: Iterable[str], listed: Sequence[ListedMailbox]) -> bool:
    """Whether an account is mirrored the Gmail way: the server offers X-GM-EXT-1
    and lists a selectable All Mail (`\\All`).

    Without All Mail (a user can hide it from IMAP) each folder is mirrored as on
    any server, labels still stored on the rows: a message with two labels is then
    two rows, but none is lost.
    """
    if gmail.CAPABILITY not in {capability.upper() for capability in capabilities}:
        return False
    return any(
        "\\all" in attributes and not attributes & _UNSELECTABLE
        for attributes in map(_attributes, listed)
    )


def gmail_label(mailbox: ListedMailbox) -> str | None:
    """On a Gmail account, the label a listed folder shows (None: it is part of the
    store, All Mail, Spam or Trash, which are mirrored, or holds no messages).

    INBOX is `\\Inbox`; the special folders are their system labels (`\\Sent`,
    `\\Draft`, `\\Starred`, `\\Important`); any other folder is the user label of
    its full name (`Work`, `Clients/Acme`), as X-GM-LABELS gives it.
    """
    attributes = _attributes(mailbox)
    if attributes & (gmail.STORE_ATTRIBUTES | _UNSELECTABLE):
        return None
    if mailbox.name.upper() == "INBOX":
        return gmail.INBOX_LABEL
    for attribute, label in gmail.SYSTEM_LABELS.items():
        if attribute in attributes:
            return label
    return mailbox.name


def gmail_wanted(
    mailboxes: Sequence[tuple[ListedMailbox, str | None]], options: SyncOptions
) -> list[ListedMailbox]:
    """The mailboxes of a Gmail account to store, from (listing, role) pairs.

    `options` choose as on any server, with one difference: All Mail holds the
    messages of every label, so it is mirrored whenever a label folder is included
    (`include_mailboxes: ["INBOX"]` mirrors All Mail, and lists INBOX as `\\Inbox`).
    """
    wanted = [mailbox for mailbox, role in mailboxes if options.wants(mailbox, role)]
    if any(gmail_label(mailbox) is not None for mailbox in wanted):
        wanted += [
            mailbox
            for mailbox, role in mailboxes
            if role == "all"
            and mailbox not in wanted
            and mailbox.name not in options.exclude_mailboxes
            and "all" not in options.exclude_mailboxes
        ]
    return wanted


def gmail_sync_targets(
    requested: Iterable[str], *, label_folders: Iterable[str], all_mail: str | None
) -> set[str]:
    """The mailboxes a pass over `requested` syncs on a Gmail account.

    A label folder holds no rows: a change reported in it (IDLE watches INBOX) is
    a change of All Mail's messages, so All Mail is synced in its place.
    """
    targets = set(requested)
    folders = targets & set(label_folders)
    if folders and all_mail is not None:
        targets = (targets - folders) | {all_mail}
    return targets


@dataclass(frozen=True, slots=True)
class StoredMailbox:
    """A mailbox row, reduced to what reconciliation needs."""

    name: str
    uidvalidity: int | None


@dataclass(frozen=True, slots=True)
class MailboxChanges:
    """How the server's mailbox list differs from the stored one."""

    created: list[ListedMailbox] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # (old name, new listing): same UIDVALIDITY under a new name (RFC 3501 RENAME).
    renamed: list[tuple[str, ListedMailbox]] = field(default_factory=list)
    kept: list[ListedMailbox] = field(default_factory=list)


def reconcile_mailboxes(
    stored: Sequence[StoredMailbox],
    listed: Sequence[ListedMailbox],
    server_uidvalidity: dict[str, int],
) -> MailboxChanges:
    """Compare stored and listed mailboxes; detect renames by UIDVALIDITY.

    `server_uidvalidity` holds what STATUS/LIST-STATUS reported for listed names
    (may be partial). A stored mailbox that vanished and a new one with the same
    UIDVALIDITY is a rename, so its messages are kept rather than refetched.
    """
    stored_by_name = {m.name: m for m in stored}
    listed_by_name = {m.name: m for m in listed}
    gone = [m for m in stored if m.name not in listed_by_name]
    new = [m for m in listed if m.name not in stored_by_name]
    changes = MailboxChanges(kept=[m for m in listed if m.name in stored_by_name])
    gone_by_validity = {m.uidvalidity: m for m in gone if m.uidvalidity is not None}
    for mailbox in new:
        validity = server_uidvalidity.get(mailbox.name)
        previous = gone_by_validity.pop(validity, None) if validity is not None else None
        if previous is not None:
            changes.renamed.append((previous.name, mailbox))
        else:
            changes.created.append(mailbox)
    renamed_from = {old for old, _ in changes.renamed}
    changes.deleted.extend(m.name for m in gone if m.name not in renamed_from)
    return changes


@dataclass(frozen=True, slots=True)
class LocalMailbox:
    """What is stored for a mailbox: its sync cursor and row count."""

    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    stored_count: int


@dataclass(frozen=True, slots=True)
class MailboxPlan:
    """What one sync pass over a selected mailbox does."""

    reset: bool
    fetch_from_uid: int | None
    flags_changed_since: int | None
    full_flag_scan: bool
    vanished: tuple[int, ...]
    search_for_deletions: bool
    initial: bool

    @property
    def idle(self) -> bool:
        return not (
            self.reset
            or self.fetch_from_uid is not None
            or self.flags_changed_since is not None
            or self.full_flag_scan
            or self.vanished
            or self.search_for_deletions
        )


def plan_mailbox(local: LocalMailbox, server: SelectedState, *, qresync: bool) -> MailboxPlan:
    """Decide one pass (see the module docstring for the table)."""
    initial = local.uidvalidity is None
    reset = not initial and local.uidvalidity != server.uidvalidity
    if initial or reset:
        return MailboxPlan(
            reset=reset,
            fetch_from_uid=1 if server.exists else None,
            flags_changed_since=None,
            full_flag_scan=False,
            vanished=(),
            search_for_deletions=False,
            initial=True,
        )
    stored_next = local.uidnext or 1
    has_new = server.exists > 0 and (server.uidnext is None or server.uidnext > stored_next)
    condstore = server.highestmodseq is not None and not server.nomodseq
    flags_since: int | None = None
    full_scan = False
    if condstore and local.highestmodseq is not None:
        if server.highestmodseq != local.highestmodseq:
            flags_since = local.highestmodseq
    elif local.stored_count:
        # Without CONDSTORE there is no cheap way to know; list every flag.
        full_scan = True
    vanished = tuple(server.vanished) if qresync else ()
    # Counts disagreeing after the new ones arrive means something was expunged.
    search = (
        not qresync
        and local.stored_count > 0
        and (
            server.exists < local.stored_count
            or (not has_new and server.exists != local.stored_count)
        )
    )
    return MailboxPlan(
        reset=False,
        fetch_from_uid=stored_next if has_new else None,
        flags_changed_since=flags_since,
        full_flag_scan=full_scan,
        vanished=vanished,
        search_for_deletions=search,
        initial=False,
    )


def deleted_uids(stored: Iterable[int], on_server: Iterable[int], *, below: int) -> list[int]:
    """UIDs stored but no longer on the server (only those below `below`, the UIDs
    the server listing covers)."""
    present = set(on_server)
    return sorted(uid for uid in stored if uid < below and uid not in present)


@dataclass(frozen=True, slots=True)
class Candidate:
    uid: int
    size: int


def batches(
    candidates: Sequence[Candidate], *, max_count: int, max_bytes: int
) -> list[list[Candidate]]:
    """Split UIDs into fetch batches bounded by count and by total size.

    A message larger than `max_bytes` gets a batch of its own.
    """
    result: list[list[Candidate]] = []
    current: list[Candidate] = []
    current_bytes = 0
    for candidate in candidates:
        if current and (len(current) >= max_count or current_bytes + candidate.size > max_bytes):
            result.append(current)
            current, current_bytes = [], 0
        current.append(candidate)
        current_bytes += candidate.size
    if current:
        result.append(current)
    return result


def limit_initial(uids: Sequence[int], *, newest: int | None) -> list[int]:
    """The UIDs an initial sync fetches when only the newest N are wanted."""
    ordered = sorted(uids)
    if newest is not None and newest >= 0:
        return ordered[-newest:] if newest else []
    return ordered
