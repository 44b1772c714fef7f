"""Changes to messages, made on the IMAP server first and then stored as it answered.

Order of every action: open a connection of its own (`mailserver.open_mailbox`),
change the server, read what the server now holds (the FETCH answers of STORE,
COPYUID of MOVE/COPY), and only then write PostgreSQL, in the request's
transaction. A server that refuses leaves mailsvc unchanged (502 problem); a
message the server no longer has is reported as not found and left to the next
sync pass to remove. Messages of several mailboxes or accounts are handled one
mailbox at a time, each with one command per kind of change.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.connect import open_account, select_mailbox
from mailsvc.account.repository import AccountRepository
from mailsvc.errors import ConflictError, FieldError, NotFoundError, UnprocessableError
from mailsvc.event.repository import ChangeRepository
from mailsvc.imap import gmail, uids
from mailsvc.imap.connection import ImapConnection
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.db import after_commit
from mailsvc.kit.resources import Resources
from mailsvc.message import schemas
from mailsvc.message.repository import MessageRepository
from mailsvc.mirror.repository import MailboxRepository, ReportedState
from mailsvc.mirror.server_changes import record_server_changes, session_free_flags
from mailsvc.mirror.thread_repository import ThreadingRepository
from mailsvc.models import Account, Mailbox, Message

# RFC 3501 atom, without the characters that are legal but trouble in practice.
_KEYWORD = re.compile(r"[A-Za-z0-9$_.\-+&~!@#^'`|]{1,64}")


def flag_changes(update: schemas.FlagsUpdate) -> tuple[list[str], list[str]]:
    """(flags to add, flags to remove) for an update; 422 naming a bad keyword."""
    add: list[str] = []
    remove: list[str] = []
    for flag, wanted in (
        ("\\Seen", update.seen),
        ("\\Flagged", update.flagged),
        ("\\Answered", update.answered),
    ):
        if wanted is not None:
            (add if wanted else remove).append(flag)
    for name, keywords, target in (
        ("add_keywords", update.add_keywords, add),
        ("remove_keywords", update.remove_keywords, remove),
    ):
        for index, keyword in enumerate(keywords):
            if not _KEYWORD.fullmatch(keyword):
                raise UnprocessableError(
                    "a keyword must be an IMAP atom",
                    code="invalid_keyword",
                    errors=[
                        FieldError(
                            field=f"body.{name}.{index}",
                            message="letters, digits and $_.-+&~!@#^'`| only, at most 64",
                        )
                    ],
                )
            target.append(keyword)
    if not add and not remove:
        raise UnprocessableError(
            "nothing to change",
            code="empty_update",
            errors=[FieldError(field="body", message="set at least one flag or keyword")],
        )
    return add, remove


@dataclass
class _Outcome:
    done: list[uuid.UUID] = field(default_factory=list)
    gone: list[uuid.UUID] = field(default_factory=list)


_GroupAction = Callable[[ImapConnection, Account, Mailbox, list[Message]], Awaitable[_Outcome]]


# Session info key: the mailboxes whose unread counts this request's commit changes.
_UNSEEN_RECOUNT = "mailsvc.unseen_recount"


class MessageActions:
    """Flag, move and delete one tenant's messages on their servers. Never commits."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources
        self._messages = MessageRepository(session, tenant_id)
        self._accounts = AccountRepository(session, tenant_id)

    async def set_flags(
        self, ids: Sequence[uuid.UUID], update: schemas.FlagsUpdate
    ) -> schemas.BulkResult:
        add, remove = flag_changes(update)

        async def store_group(
            connection: ImapConnection, account: Account, mailbox: Mailbox, rows: list[Message]
        ) -> _Outcome:
            return await self._store_flags(connection, account, mailbox, rows, add, remove)

        return await self._each_mailbox(ids, store_group)

    async def set_labels(
        self, ids: Sequence[uuid.UUID], update: schemas.LabelsUpdate
    ) -> schemas.BulkResult:
        """Add, then remove, Gmail labels (409 `labels_not_supported` elsewhere)."""
        if not update.add and not update.remove:
            raise UnprocessableError(
                "nothing to change",
                code="empty_update",
                errors=[FieldError(field="body", message="add or remove at least one label")],
            )

        async def store_group(
            connection: ImapConnection, account: Account, mailbox: Mailbox, rows: list[Message]
        ) -> _Outcome:
            if not connection.has(gmail.CAPABILITY):
                raise _labels_not_supported()
            return await self._store_labels(connection, account, mailbox, rows, update)

        return await self._each_mailbox(ids, store_group, check=_refuse_without_labels)

    async def move(self, ids: Sequence[uuid.UUID], to: schemas.MoveRequest) -> schemas.BulkResult:
        if (to.mailbox_id is None) == (to.role is None):
            raise UnprocessableError(
                "give either a mailbox id or a role",
                code="invalid_destination",
                errors=[
                    FieldError(field="body.mailbox_id", message="exactly one of mailbox_id, role")
                ],
            )
        targets: dict[uuid.UUID, Mailbox] = {}

        async def move_group(
            connection: ImapConnection, account: Account, mailbox: Mailbox, rows: list[Message]
        ) -> _Outcome:
            if account.id not in targets:
                targets[account.id] = await self._destination(account, to)
            target = targets[account.id]
            if target.id == mailbox.id:
                return _Outcome(done=[row.id for row in rows])
            if target.gmail_label is not None and mailbox.special_use == "all":
                # Gmail would take the message out of All Mail, not put it in a folder.
                raise UnprocessableError(
                    "on Gmail a message of All Mail is labelled, not moved: "
                    f"add the label {target.gmail_label!r} (POST /api/messages/{{id}}/labels)",
                    code="invalid_destination",
                    errors=[FieldError(field="body", message="a Gmail label folder")],
                )
            return await self._move(connection, account, mailbox, rows, target)

        return await self._each_mailbox(ids, move_group)

    async def delete(self, ids: Sequence[uuid.UUID], *, permanent: bool) -> schemas.BulkResult:
        """To the account's Trash, or expunged when `permanent` or already in Trash."""

        async def delete_group(
            connection: ImapConnection, account: Account, mailbox: Mailbox, rows: list[Message]
        ) -> _Outcome:
            if permanent or mailbox.special_use == "trash":
                return await self._expunge(connection, account, mailbox, rows)
            trash = await self._messages.mailbox_with_role(account.id, "trash")
            if trash is None:
                raise ConflictError(
                    "the account has no Trash mailbox; delete with permanent=true",
                    code="no_trash_mailbox",
                )
            return await self._move(connection, account, mailbox, rows, trash)

        return await self._each_mailbox(ids, delete_group)

    async def _each_mailbox(
        self,
        ids: Sequence[uuid.UUID],
        action: _GroupAction,
        *,
        check: Callable[[list[Message]], None] | None = None,
    ) -> schemas.BulkResult:
        """Run `action` on the found messages, one mailbox at a time; `check` may
        refuse them first, before any server is contacted."""
        found = await self._messages.get_many(list(dict.fromkeys(ids)))
        if check is not None:
            check(found)
        # One connection per account, one SELECT per mailbox in it.
        groups: dict[uuid.UUID, dict[uuid.UUID, list[Message]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for row in found:
            groups[row.account_id][row.mailbox_id].append(row)
        outcome = _Outcome()
        for account_id, mailboxes in groups.items():
            account = await self._accounts.get(account_id)
            if account is None:
                continue
            gone_before = len(outcome.gone)
            async with open_account(self._resources, account) as connection:
                for mailbox_id, rows in mailboxes.items():
                    mailbox = await self._messages.mailbox(mailbox_id)
                    if mailbox is None:
                        continue
                    await select_mailbox(connection, mailbox, readonly=False)
                    result = await action(connection, account, mailbox, rows)
                    outcome.done += result.done
                    outcome.gone += result.gone
            if len(outcome.gone) > gone_before:
                # The server lost messages we still list: let a sync pass tidy up.
                self._resync_after_commit(account.id)
        known = {row.id for row in found}
        return schemas.BulkResult(
            done=outcome.done, not_found=[i for i in ids if i not in known] + outcome.gone
        )

    def _recount_unseen_after_commit(self, *mailbox_ids: uuid.UUID) -> None:
        """Recount these mailboxes' unread messages once this request has committed.

        In a transaction of its own: the recount locks mailbox rows, and this request
        holds the account row once it has appended a change, while a sync storing a
        batch locks its mailbox first and the account after. Locking another mailbox
        here, after the account, could deadlock with that sync.
        """
        pending: set[uuid.UUID] | None = self._session.info.get(_UNSEEN_RECOUNT)
        if pending is None:
            pending = self._session.info[_UNSEEN_RECOUNT] = set()
            sessionmaker, tenant_id = self._resources.sessionmaker, self._tenant_id

            async def recount() -> None:
                async with sessionmaker.begin() as session:
                    await MailboxRepository(session, tenant_id).refresh_unseen(sorted(pending))

            after_commit(self._session, recount)
        pending.update(mailbox_ids)

    def _resync_after_commit(self, account_id: uuid.UUID) -> None:
        """Queue a sync once this request's changes are committed, so it sees them."""

        async def enqueue() -> None:
            await enqueue_sync(
                self._resources.arq, tenant_id=self._tenant_id, account_id=account_id, full=False
            )

        after_commit(self._session, enqueue)

    async def _store_flags(
        self,
        connection: ImapConnection,
        account: Account,
        mailbox: Mailbox,
        rows: list[Message],
        add: list[str],
        remove: list[str],
    ) -> _Outcome:
        by_uid = {int(row.uid): row for row in rows}
        uid_set = uids.compress_uid_set(by_uid)
        answered: dict[int, list[str]] = {}
        for change, flags in (("+FLAGS", add), ("-FLAGS", remove)):
            if flags:
                for item in await connection.uid_store(uid_set, change, flags):
                    if item.uid is not None and item.flags is not None:
                        answered[item.uid] = session_free_flags(item.flags)
        await record_server_changes(
            self._session,
            self._tenant_id,
            account.id,
            mailbox.id,
            reported=[ReportedState(uid, flags) for uid, flags in answered.items()],
            recount_unseen=False,
        )
        self._recount_unseen_after_commit(mailbox.id)
        return _Outcome(
            done=[row.id for uid, row in by_uid.items() if uid in answered],
            gone=[row.id for uid, row in by_uid.items() if uid not in answered],
        )

    async def _store_labels(
        self,
        connection: ImapConnection,
        account: Account,
        mailbox: Mailbox,
        rows: list[Message],
        update: schemas.LabelsUpdate,
    ) -> _Outcome:
        by_uid = {int(row.uid): row for row in rows}
        uid_set = uids.compress_uid_set(by_uid)
        for change, labels in (("+X-GM-LABELS", update.add), ("-X-GM-LABELS", update.remove)):
            if labels:
                await connection.uid_store_labels(uid_set, change, labels)
        # Read back what the server holds now: a label can change flags too (`\Starred`
        # is `\Flagged`), and one (`\Trash`, `\Spam`) takes the message out of this
        # mailbox altogether, which the sync then records.
        items, _ = await connection.uid_fetch(uid_set, "UID FLAGS X-GM-LABELS")
        reported = [
            ReportedState(
                uid=item.uid,
                flags=None if item.flags is None else session_free_flags(item.flags),
                labels=None if item.gm_labels is None else list(item.gm_labels),
            )
            for item in items
            if item.uid in by_uid
        ]
        await record_server_changes(
            self._session,
            self._tenant_id,
            account.id,
            mailbox.id,
            reported=reported,
            recount_unseen=False,
        )
        self._recount_unseen_after_commit(mailbox.id)
        answered = {state.uid for state in reported}
        return _Outcome(
            done=[row.id for uid, row in by_uid.items() if uid in answered],
            gone=[row.id for uid, row in by_uid.items() if uid not in answered],
        )

    async def _move(
        self,
        connection: ImapConnection,
        account: Account,
        source: Mailbox,
        rows: list[Message],
        target: Mailbox,
    ) -> _Outcome:
        by_uid = {int(row.uid): row for row in rows}
        uid_set = uids.compress_uid_set(by_uid)
        if connection.has("MOVE"):
            copied = await connection.uid_move(uid_set, target.name)
        elif connection.has("UIDPLUS"):
            copied = await connection.uid_copy(uid_set, target.name)
            await connection.uid_store(uid_set, "+FLAGS", ["\\Deleted"])
            await connection.uid_expunge(uid_set)
        else:
            raise ConflictError(
                "the server offers neither MOVE nor UIDPLUS, so a move could expunge "
                "other messages",
                code="move_unsupported",
            )
        if copied is None or target.uidvalidity is None or copied[0] != target.uidvalidity:
            # Where the messages went is unknown (or the target is not synced yet):
            # drop them here; the target's next sync stores them.
            await record_server_changes(
                self._session,
                self._tenant_id,
                account.id,
                source.id,
                vanished=list(by_uid),
                recount_unseen=False,
            )
            self._recount_unseen_after_commit(source.id)
            self._resync_after_commit(account.id)
            return _Outcome(done=[row.id for row in rows])
        _, new_uids = copied
        moves = [(by_uid[old].id, new) for old, new in new_uids.items() if old in by_uid]
        await self._messages.relocate(moves, mailbox_id=target.id, uidvalidity=target.uidvalidity)
        self._recount_unseen_after_commit(source.id, target.id)
        moved = {message_id for message_id, _ in moves}
        await ThreadingRepository(self._session, self._tenant_id).refresh_summaries(
            [row.thread_id for row in rows if row.thread_id is not None and row.id in moved]
        )
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message.updated",
                {
                    "message_id": str(message_id),
                    "mailbox_id": str(target.id),
                    "previous_mailbox_id": str(source.id),
                    "uid": uid,
                },
            )
            for message_id, uid in moves
        ]
        await ChangeRepository(self._session, self._tenant_id).append_many(account.id, events)
        return _Outcome(
            done=[row.id for row in rows if row.id in moved],
            gone=[row.id for row in rows if row.id not in moved],
        )

    async def _expunge(
        self, connection: ImapConnection, account: Account, mailbox: Mailbox, rows: list[Message]
    ) -> _Outcome:
        if not connection.has("UIDPLUS"):
            raise ConflictError(
                "the server lacks UIDPLUS, so expunging could remove other messages",
                code="expunge_unsupported",
            )
        by_uid = {int(row.uid): row for row in rows}
        uid_set = uids.compress_uid_set(by_uid)
        marked = await connection.uid_store(uid_set, "+FLAGS", ["\\Deleted"])
        present = {item.uid for item in marked if item.uid is not None}
        await connection.uid_expunge(uid_set)
        await record_server_changes(
            self._session,
            self._tenant_id,
            account.id,
            mailbox.id,
            vanished=list(by_uid),
            recount_unseen=False,
        )
        self._recount_unseen_after_commit(mailbox.id)
        return _Outcome(
            done=[row.id for uid, row in by_uid.items() if uid in present],
            gone=[row.id for uid, row in by_uid.items() if uid not in present],
        )

    async def _destination(self, account: Account, to: schemas.MoveRequest) -> Mailbox:
        if to.mailbox_id is not None:
            target = await self._messages.mailbox(to.mailbox_id)
            if target is None or target.account_id != account.id or not target.selectable:
                raise UnprocessableError(
                    "the destination must be a mailbox of the message's account",
                    code="invalid_destination",
                    errors=[
                        FieldError(field="body.mailbox_id", message="not a mailbox of this account")
                    ],
                )
            return target
        assert to.role is not None
        target = await self._messages.mailbox_with_role(account.id, to.role)
        if target is None:
            raise UnprocessableError(
                f"the account has no {to.role} mailbox",
                code="invalid_destination",
                errors=[FieldError(field="body.role", message=f"no {to.role} mailbox")],
            )
        return target


def _labels_not_supported() -> ConflictError:
    return ConflictError(
        "labels are Gmail's: the message's server does not offer X-GM-EXT-1",
        code="labels_not_supported",
    )


def _refuse_without_labels(rows: list[Message]) -> None:
    # Labels are stored (possibly empty) on every row of a Gmail account, NULL elsewhere.
    if any(row.labels is None for row in rows):
        raise _labels_not_supported()


def single(result: schemas.BulkResult) -> None:
    """A one-message action: not found (anywhere) is a 404."""
    if not result.done:
        raise NotFoundError("message not found", code="message_not_found")
