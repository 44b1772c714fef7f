"""The sync engine: runs `plan.py`'s decisions against a server, batch by batch.

One pass over an account:

    connect (state -> connected | auth_error | connect_error)
    ENABLE QRESYNC; LIST (+ STATUS per mailbox via LIST-STATUS when offered)
    reconcile mailboxes (created / renamed / deleted), one transaction
    for each wanted, selectable mailbox:
        a Gmail label folder?         -> skip: its messages are All Mail's rows
                                         (plan.py), a request for it syncs All Mail
        unchanged by STATUS?          -> skip without SELECT
        SELECT (QRESYNC or CONDSTORE) -> plan_mailbox()
        reset                         -> drop the mailbox's rows (one transaction)
        new UIDs                      -> fetch in batches bounded by count and bytes;
                                         batch N+1 is fetched while N is parsed in the
                                         process pool and stored; each batch is one
                                         transaction that also advances `uidnext`
        flags, deletions              -> one transaction, then `highestmodseq`
                                         (Gmail: labels with the flags; rows stored
                                         without labels get them from one listing)
    sync.completed change, when the pass changed a message or is the account's first;
    account.indexed, when this pass completed the first mirror and the indexer had
    already indexed every stored message (otherwise the indexer sends it)

Search documents are not written here: triggers on `messages` queue every stored,
changed or deleted row for the worker's indexer (`mailsvc.search.indexer`), so a
stored batch is listable at once and searchable when the indexer reaches it.

Invariants: a mailbox's `uidnext` only advances in the transaction that stored the
messages below it, and inserts ignore UIDs already stored, so a pass cut anywhere
(socket closed, server restarted, process killed) is resumed by the next one with
nothing missing and nothing duplicated. `highestmodseq` is written last, after the
flag and deletion changes it vouches for.

An answer that cannot be read (`ImapProtocolError`) fails its mailbox only: the
mailbox is marked `error` with what could not be read, keeps what was committed
before (by the invariants above, a consistent prefix), and the pass goes on with the
next mailbox. Its next successful pass marks it `synced` again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.logins import AccountLogins
from mailsvc.account.repository import AccountRepository
from mailsvc.config import Settings
from mailsvc.event.account_state import change_account_state
from mailsvc.event.repository import ChangeRepository
from mailsvc.imap import gmail, wire
from mailsvc.imap.connection import ImapConnection
from mailsvc.imap.errors import (
    ImapAuthError,
    ImapCommandError,
    ImapConnectError,
    ImapProtocolError,
)
from mailsvc.kit.db import utcnow
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.mime.text import safe_server_text
from mailsvc.mirror.repository import MailboxRepository, MirrorRepository, ReportedState
from mailsvc.mirror.thread_repository import ThreadingRepository
from mailsvc.models import Mailbox
from mailsvc.ops.metrics import observe_sync
from mailsvc.search.indexed import announce_if_indexed
from mailsvc.sync import plan as planning
from mailsvc.sync.fetch import fetch_batch
from mailsvc.sync.parser import Fetched, ParserPool
from mailsvc.sync.reconcile import reconcile
from mailsvc.sync.reported import GMAIL_BACKFILL_ITEMS, backfilled, reported_state
from mailsvc.sync.writer import MailboxWriter, settle_label_folder

log = structlog.get_logger("mailsvc.sync")

# A first mirror re-analyzes the messages table after these batches (see
# `MirrorRepository.refresh_statistics`): early, then once the table is sizeable.
_ANALYZE_AFTER_BATCHES = frozenset({2, 8, 32})
_STATUS_ITEMS = "MESSAGES UIDNEXT UIDVALIDITY UNSEEN"


class AccountGoneError(Exception):
    """The account was deleted (or never existed) or disabled while a sync was due."""


@dataclass
class SyncReport:
    """What one pass changed."""

    mailboxes: int = 0
    new_messages: int = 0
    updated: int = 0
    deleted: int = 0
    # Mailboxes whose server answer could not be read; each is marked `error`.
    failed: int = 0

    @property
    def changed(self) -> bool:
        """Whether the pass stored, updated or deleted any message."""
        return bool(self.new_messages or self.updated or self.deleted)


class SyncEngine:
    """Mirrors accounts into PostgreSQL; safe to run from the worker or the api process."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        logins: AccountLogins,
        settings: Settings,
        parser: ParserPool,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._logins = logins
        self._settings = settings
        self._parser = parser

    async def sync_account(
        self,
        tenant_id: str,
        account_id: uuid.UUID,
        *,
        full: bool = False,
        mailboxes: Sequence[str] | None = None,
    ) -> SyncReport:
        """One pass over the account (or over the named mailboxes); see the module doc.

        Raises `ImapAuthError` (after setting `auth_error`), `ImapConnectError` (after
        setting `connect_error`) and `AccountGoneError`.
        """
        async with self._sessionmaker() as session:
            account = await AccountRepository(session, tenant_id).get(account_id)
            if account is None or account.state == "disabled":
                raise AccountGoneError(str(account_id))
            options = planning.SyncOptions.from_stored(account.sync_options or {})
            indexed_at = account.indexed_at
        started = time.perf_counter()
        try:
            connection = await self._logins.connect_imap(account)
        except ImapAuthError as exc:
            await self._set_state(tenant_id, account_id, "auth_error", str(exc))
            observe_sync(outcome="auth_error", seconds=time.perf_counter() - started)
            raise
        except ImapConnectError as exc:
            await self._set_state(tenant_id, account_id, "connect_error", str(exc))
            observe_sync(outcome="connect_error", seconds=time.perf_counter() - started)
            raise
        await self._set_state(tenant_id, account_id, "connected", None)
        report = SyncReport()
        try:
            await self._run(
                connection,
                tenant_id,
                account_id,
                options,
                full,
                mailboxes,
                report,
                indexed_at=indexed_at,
            )
        except ImapConnectError as exc:
            await self._set_state(tenant_id, account_id, "connect_error", str(exc))
            observe_sync(outcome="connect_error", seconds=time.perf_counter() - started)
            raise
        finally:
            await connection.logout()
        observe_sync(
            outcome="ok",
            seconds=time.perf_counter() - started,
            new=report.new_messages,
            updated=report.updated,
            deleted=report.deleted,
        )
        log.info(
            "sync.account_done",
            account_id=str(account_id),
            mailboxes=report.mailboxes,
            new=report.new_messages,
            updated=report.updated,
            deleted=report.deleted,
            failed=report.failed,
        )
        return report

    async def _run(
        self,
        connection: ImapConnection,
        tenant_id: str,
        account_id: uuid.UUID,
        options: planning.SyncOptions,
        full: bool,
        only: Sequence[str] | None,
        report: SyncReport,
        *,
        indexed_at: datetime | None,
    ) -> None:
        await connection.enable("QRESYNC")
        qresync = connection.has("QRESYNC") and connection.has("ENABLE")
        listed = await connection.list_mailboxes()
        gmail_labels = connection.has(gmail.CAPABILITY)
        gmail_store = planning.gmail_store_mode(connection.capabilities, listed)
        statuses: dict[str, wire.MailboxStatus] = {}
        if connection.has("LIST-STATUS"):
            items = _STATUS_ITEMS + (" HIGHESTMODSEQ" if connection.has("CONDSTORE") else "")
            statuses = wire.parse_status(
                await connection.command(f'LIST "" "*" RETURN (STATUS ({items}))')
            )
        async with self._sessionmaker.begin() as session:
            rows = await reconcile(
                session,
                tenant_id,
                account_id,
                listed=listed,
                statuses=statuses,
                options=options,
                gmail=gmail_store,
            )
            first_sync = not await MailboxRepository(session, tenant_id).has_synced(account_id)
        wanted = set(only) if only is not None else None
        if wanted is not None and gmail_store:
            wanted = planning.gmail_sync_targets(
                wanted,
                label_folders=[m.name for m in rows if m.gmail_label is not None],
                all_mail=next(
                    (m.name for m in rows if m.special_use == "all" and m.gmail_label is None),
                    None,
                ),
            )
        for mailbox in rows:
            if not mailbox.selectable or (wanted is not None and mailbox.name not in wanted):
                continue
            if mailbox.gmail_label is not None:
                await settle_label_folder(self._sessionmaker, tenant_id, account_id, mailbox)
                continue
            if full:
                await self._forget(tenant_id, account_id, mailbox)
            status = statuses.get(mailbox.name)
            if (
                not full
                and status is not None
                and self._unchanged(mailbox, status)
                # Rows stored before Gmail's labels were fetched get them now, not
                # whenever the mailbox next changes (`_sync_mailbox`).
                and not (gmail_labels and await self._lacks_labels(tenant_id, mailbox))
            ):
                continue
            report.mailboxes += 1
            try:
                await self._sync_mailbox(
                    connection, tenant_id, account_id, mailbox, options, qresync, report
                )
            except ImapProtocolError as exc:
                # Same connection: the bad answer was read to its tagged OK before parsing.
                report.failed += 1
                await self._record_mailbox_error(tenant_id, account_id, mailbox, exc)
        # `account.indexed` is sent once, by whichever of this pass and the indexer
        # finishes last (mailsvc.search.indexed); once sent, passes skip the check.
        announce = indexed_at is None
        if not (first_sync or report.changed or announce):
            # A pass that found nothing new tells no one anything: every IDLE wake-up,
            # periodic resync and follow-up pass would otherwise reach every webhook.
            return
        async with self._sessionmaker.begin() as session:
            if first_sync or report.changed:
                await ChangeRepository(session, tenant_id).append_many(
                    account_id,
                    [
                        (
                            "sync.completed",
                            {
                                "account_id": str(account_id),
                                "new_messages": report.new_messages,
                                "updated": report.updated,
                                "deleted": report.deleted,
                            },
                        )
                    ],
                )
            if announce:
                # The indexer may have indexed the last stored message before this pass
                # completed the mirror; then nothing but this pass would say so.
                await announce_if_indexed(session, tenant_id, account_id)

    @staticmethod
    def _unchanged(mailbox: Mailbox, status: wire.MailboxStatus) -> bool:
        # A pass that failed or was cut may have stored the server's counts already,
        # with the deletions or flags behind them still to do.
        return (
            mailbox.sync_state == "synced"
            and mailbox.uidvalidity is not None
            and status.uidvalidity == mailbox.uidvalidity
            and status.uidnext == mailbox.uidnext
            and status.messages == mailbox.messages_total
            and (status.highestmodseq is None or status.highestmodseq == mailbox.highestmodseq)
        )

    async def _lacks_labels(self, tenant_id: str, mailbox: Mailbox) -> bool:
        async with self._sessionmaker() as session:
            return await MirrorRepository(session, tenant_id).lacks_labels(mailbox.id)

    async def _record_mailbox_error(
        self, tenant_id: str, account_id: uuid.UUID, mailbox: Mailbox, error: ImapProtocolError
    ) -> None:
        """Mark the mailbox failed; its cursor and rows stay as last committed."""
        text = safe_server_text(f"unreadable server response: {error}")
        log.warning(
            "sync.mailbox_protocol_error",
            account_id=str(account_id),
            mailbox_id=str(mailbox.id),
            error=text,
        )
        async with self._sessionmaker.begin() as session:
            await MailboxRepository(session, tenant_id).set_fields(
                mailbox.id, sync_state="error", sync_error=text, sync_error_at=utcnow()
            )

    async def _forget(self, tenant_id: str, account_id: uuid.UUID, mailbox: Mailbox) -> None:
        """`full=True`: drop what is stored so the mailbox is fetched from scratch."""
        async with self._sessionmaker.begin() as session:
            removed = await MirrorRepository(session, tenant_id).delete_mailbox_messages(mailbox.id)
            await ThreadingRepository(session, tenant_id).refresh_summaries(
                [t for _, _, t in removed if t is not None]
            )
            await MailboxRepository(session, tenant_id).set_fields(
                mailbox.id,
                uidvalidity=None,
                uidnext=None,
                highestmodseq=None,
                messages_synced=0,
                messages_unseen=0,
            )
        mailbox.uidvalidity = mailbox.uidnext = mailbox.highestmodseq = None
        mailbox.messages_synced = 0

    async def _sync_mailbox(
        self,
        connection: ImapConnection,
        tenant_id: str,
        account_id: uuid.UUID,
        mailbox: Mailbox,
        options: planning.SyncOptions,
        qresync: bool,
        report: SyncReport,
    ) -> None:
        resume = (
            (mailbox.uidvalidity, mailbox.highestmodseq)
            if qresync and mailbox.uidvalidity and mailbox.highestmodseq
            else None
        )
        try:
            selected = await connection.select(mailbox.name, condstore=True, qresync=resume)
        except ImapCommandError as exc:
            # The mailbox went away between LIST and SELECT; the next LIST sees it.
            log.warning("sync.select_failed", mailbox=mailbox.name, error=str(exc))
            return
        local = planning.LocalMailbox(
            uidvalidity=mailbox.uidvalidity,
            uidnext=mailbox.uidnext,
            highestmodseq=mailbox.highestmodseq,
            stored_count=mailbox.messages_synced,
        )
        step = planning.plan_mailbox(local, selected, qresync=resume is not None)
        log.debug("sync.mailbox_plan", mailbox=mailbox.name, plan=str(step))
        labels = connection.has(gmail.CAPABILITY)
        writer = MailboxWriter(self._sessionmaker, tenant_id, account_id, mailbox, gmail=labels)
        await writer.start(selected)
        if step.reset:
            report.deleted += await writer.reset(selected.uidvalidity)
        if step.fetch_from_uid is not None:
            report.new_messages += await self._fetch_new(
                connection, writer, step, selected, options
            )
        changes: list[ReportedState] = []
        vanished: list[int] = list(step.vanished)
        changes += [
            reported_state(item, labels=labels)
            for item in selected.changed
            if item.uid is not None and item.flags is not None
        ]
        # Rows stored before mailsvc fetched Gmail's labels get them (and Gmail's ids)
        # from one listing of every message, once; the labels are not news, so no
        # `message.updated` is sent for them (the search documents are requeued).
        backfill = labels and not step.initial and await writer.lacks_labels()
        if backfill:
            items, _ = await connection.uid_fetch("1:*", GMAIL_BACKFILL_ITEMS)
            changes += [backfilled(item) for item in items if item.uid is not None]
        elif step.flags_changed_since is not None or step.full_flag_scan:
            modifiers = ""
            if step.flags_changed_since is not None:
                modifiers = f"CHANGEDSINCE {step.flags_changed_since}"
                if resume is not None:
                    modifiers += " VANISHED"
            # Gmail raises a message's MODSEQ when its labels change too, so the same
            # CHANGEDSINCE fetch brings label changes when it asks for them.
            fetched = "UID FLAGS X-GM-LABELS" if labels else "UID FLAGS"
            items, gone = await connection.uid_fetch("1:*", fetched, modifiers=modifiers)
            changes += [reported_state(i, labels=labels) for i in items if i.uid is not None]
            vanished += gone
        if step.search_for_deletions:
            on_server = await connection.uid_search("ALL")
            stored = await writer.stored_uids()
            vanished += planning.deleted_uids(stored, on_server, below=selected.uidnext or 2**32)
        updated, deleted = await writer.apply_changes(
            changes, vanished, selected, announce=not backfill
        )
        report.updated += updated
        report.deleted += deleted

    async def _fetch_new(
        self,
        connection: ImapConnection,
        writer: MailboxWriter,
        step: planning.MailboxPlan,
        selected: wire.SelectedState,
        options: planning.SyncOptions,
    ) -> int:
        assert step.fetch_from_uid is not None
        listing, _ = await connection.uid_fetch(f"{step.fetch_from_uid}:*", "UID RFC822.SIZE")
        candidates = [
            planning.Candidate(item.uid, item.size or 0)
            for item in sorted(listing, key=lambda i: i.uid or 0)
            if item.uid is not None and item.uid >= step.fetch_from_uid
        ]
        if step.initial and (options.since or options.max_messages_per_mailbox is not None):
            allowed = {c.uid for c in candidates}
            if options.since:
                imap_date = wire.imap_date(options.since)
                allowed &= set(await connection.uid_search(f"SINCE {imap_date}"))
            kept = set(
                planning.limit_initial(sorted(allowed), newest=options.max_messages_per_mailbox)
            )
            candidates = [c for c in candidates if c.uid in kept]
        settings = self._settings
        groups = planning.batches(
            candidates, max_count=settings.sync_batch_messages, max_bytes=settings.sync_batch_bytes
        )
        announce = not step.initial or options.events_for_existing
        stored = 0
        # Three stages overlap: batch N+1 streams in and is parsed (worker processes)
        # while batch N is stored (PostgreSQL). Stores stay in UID order, one at a time,
        # because each advances the mailbox's `uidnext`.
        cap = settings.sync_max_message_bytes

        def fetch(index: int) -> asyncio.Future[list[tuple[wire.FetchedItem, Fetched]]] | None:
            if index >= len(groups):
                return None
            return asyncio.ensure_future(
                fetch_batch(connection, groups[index], max_message_bytes=cap)
            )

        fetching = fetch(0)
        storing: asyncio.Future[int] | None = None
        try:
            for index, group in enumerate(groups):
                assert fetching is not None
                items = await fetching
                fetching = fetch(index + 1)
                parsed = await self._parser.parse([source for _, source in items])
                if storing is not None:
                    stored += await storing
                if index in _ANALYZE_AFTER_BATCHES and step.initial:
                    await writer.refresh_statistics()
                storing = asyncio.ensure_future(  # noqa: RUF006 - awaited on the next batch
                    writer.store_batch(
                        [item for item, _ in items],
                        parsed,
                        next_uid=group[-1].uid + 1,
                        announce=announce,
                    )
                )
            if storing is not None:
                stored += await storing
        except BaseException:
            await cancel_and_wait([task for task in (fetching, storing) if task is not None])
            raise
        last_uid = candidates[-1].uid if candidates else 0
        await writer.finish_new(max(selected.uidnext or 0, last_uid + 1))
        return stored

    async def record_login_refused(self, tenant_id: str, account_id: uuid.UUID, error: str) -> None:
        """Park the account in `auth_error`: a login of someone else's was refused."""
        await self._set_state(tenant_id, account_id, "auth_error", error)

    async def _set_state(
        self, tenant_id: str, account_id: uuid.UUID, state: str, error: str | None
    ) -> None:
        async with self._sessionmaker.begin() as session:
            await change_account_state(session, tenant_id, account_id, state, error)

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self._sessionmaker
