"""The copy of each draft in the account's Drafts mailbox (`send_options.save_drafts`).

The database is the truth; the server copy follows it, best effort, after each
commit that creates, changes or deletes a draft:

    refresh ── build the draft (new Message-ID) ── APPEND (\\Draft \\Seen)
       │         unbuildable (no recipients yet) or save_drafts off: no copy
       ▼
    record the new (UIDVALIDITY, UID) on the draft, in a short transaction, only if
    the draft is still the version that was built; the copy that nothing refers to
    any more (the previous one, or this one when a newer save overtook it) is then
    removed: UID STORE +FLAGS (\\Deleted), UID EXPUNGE, if UIDVALIDITY still matches.

Saves racing each other therefore leave exactly the newest version's copy. A
failure (server down, login refused) is logged and leaves the previous copy, if
any, in place: the next save or the deletion tries again. A crash between APPEND
and the record leaves an orphan copy in the mailbox, never a lost draft.

The copy holds what the draft holds, except that Bcc is never written into a
message (build_message keeps it for the envelope) and a forwarded original is
attached only when the draft is sent.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from mailsvc.account.connect import account_imap
from mailsvc.account.repository import UNWATCHED_STATES, AccountRepository
from mailsvc.compose.build import build_message, new_message_id
from mailsvc.compose.model import AttachmentSpec, Composition, Mailbox, OriginalMessage
from mailsvc.compose.validate import CompositionError
from mailsvc.draft.repository import DraftRepository, ServerCopy, server_copy
from mailsvc.imap.connection import ImapConnection
from mailsvc.imap.errors import ImapError
from mailsvc.imap.mailboxes import mailbox_on_server
from mailsvc.kit.resources import Resources
from mailsvc.message.repository import MessageRepository
from mailsvc.models import Account, Draft
from mailsvc.models.message import Address

log = structlog.get_logger("mailsvc.draft")

DRAFT_FLAGS = ("\\Draft", "\\Seen")


def saves_drafts(account: Account) -> bool:
    return bool((account.send_options or {}).get("save_drafts", False))


def _mailbox(address: Address) -> Mailbox:
    return Mailbox(address=address.get("address") or "", name=address.get("name"))


def attachment_specs(draft: Draft) -> tuple[AttachmentSpec, ...]:
    """The draft's attachments to build a message with; their content must be loaded."""
    return tuple(
        AttachmentSpec(
            filename=a.filename,
            content_type=a.content_type,
            content=a.content,
            content_id=a.content_id,
            inline=a.is_inline,
        )
        for a in draft.attachments
    )


def draft_composition(draft: Draft, account: Account) -> Composition:
    """The draft as a composition; its attachments' content must be loaded."""
    sender = (
        _mailbox(draft.from_)
        if draft.from_ is not None
        else Mailbox(address=account.email, name=account.display_name)
    )
    original = None
    if draft.in_reply_to is not None:
        original = OriginalMessage(
            message_id=draft.in_reply_to, references=tuple(draft.references or ())
        )
    return Composition(
        from_=sender,
        to=tuple(_mailbox(a) for a in draft.to),
        cc=tuple(_mailbox(a) for a in draft.cc),
        bcc=tuple(_mailbox(a) for a in draft.bcc),
        reply_to=tuple(_mailbox(a) for a in draft.reply_to),
        subject=draft.subject,
        text_body=draft.text_body,
        html_body=draft.html_body,
        attachments=attachment_specs(draft),
        headers=dict(draft.headers),
        reply_to_original=original,
    )


@dataclass(frozen=True, slots=True)
class _Built:
    raw: bytes
    message_id: str


def _build(composition: Composition) -> _Built | None:
    """The draft's MIME, or None while it cannot be built (no recipients yet)."""
    try:
        built = build_message(
            composition,
            message_id=new_message_id(composition.from_.address),
            date=datetime.now(UTC),
        )
    except CompositionError:
        return None
    return _Built(raw=built.raw, message_id=built.message_id)


class DraftMirror:
    """Keeps one tenant's drafts in their accounts' Drafts mailboxes. Never raises:
    it runs after the commit, when the request has already succeeded."""

    def __init__(self, resources: Resources, tenant_id: str) -> None:
        self._resources = resources
        self._tenant_id = tenant_id

    async def refresh(self, draft_id: uuid.UUID) -> None:
        """Make the server copy match the draft as committed (or remove it)."""
        try:
            await self._refresh(draft_id)
        except ImapError as exc:
            log.warning("draft.copy_failed", draft_id=str(draft_id), error=str(exc))
        except Exception:
            log.exception("draft.copy_crashed", draft_id=str(draft_id))

    async def remove(self, account_id: uuid.UUID, copy: ServerCopy) -> None:
        """Remove the copy of a draft that was deleted or sent."""
        try:
            async with self._resources.read_sessionmaker() as session:
                account = await AccountRepository(session, self._tenant_id).get(account_id)
            if account is None or account.state in UNWATCHED_STATES:
                return
            async with self._imap(account) as imap:
                mailbox = await self._drafts_mailbox(account, imap)
                if mailbox is not None:
                    await _expunge(imap, mailbox, copy)
        except ImapError as exc:
            log.warning("draft.copy_remove_failed", account_id=str(account_id), error=str(exc))
        except Exception:
            log.exception("draft.copy_remove_crashed", account_id=str(account_id))

    async def _refresh(self, draft_id: uuid.UUID) -> None:
        async with self._resources.read_sessionmaker() as session:
            draft = await DraftRepository(session, self._tenant_id).get(draft_id, content=True)
            if draft is None:
                return  # deleted meanwhile; the deletion removes the copy
            account = await AccountRepository(session, self._tenant_id).get(draft.account_id)
        if account is None or account.state in UNWATCHED_STATES:
            return
        previous = server_copy(draft)
        built = None
        if saves_drafts(account):
            built = await asyncio.to_thread(_build, draft_composition(draft, account))
            if built is None:
                log.debug("draft.copy_skipped", draft_id=str(draft_id), reason="unbuildable")
        if built is None and previous is None:
            return
        async with self._imap(account) as imap:
            mailbox = await self._drafts_mailbox(account, imap)
            if mailbox is None:
                log.warning("draft.no_drafts_mailbox", account_id=str(account.id))
                return
            copy = None if built is None else await _append(imap, mailbox, built)
            async with self._resources.sessionmaker.begin() as session:
                _, obsolete = await DraftRepository(session, self._tenant_id).record_server_copy(
                    draft.id, version=draft.updated_at, copy=copy
                )
            if obsolete is not None:
                await _expunge(imap, mailbox, obsolete)
        log.info(
            "draft.copy_updated", draft_id=str(draft_id), uid=None if copy is None else copy.uid
        )

    async def _drafts_mailbox(self, account: Account, imap: ImapConnection) -> str | None:
        """The Drafts mailbox: as synced, else as the server lists it now."""
        async with self._resources.read_sessionmaker() as session:
            known = await MessageRepository(session, self._tenant_id).mailbox_with_role(
                account.id, "drafts"
            )
        if known is not None:
            return known.name
        return await mailbox_on_server(imap, "drafts")

    def _imap(self, account: Account) -> AbstractAsyncContextManager[ImapConnection]:
        return account_imap(self._resources, account)


async def _append(imap: ImapConnection, mailbox: str, built: _Built) -> ServerCopy | None:
    appended = await imap.append(mailbox, built.raw, flags=DRAFT_FLAGS)
    if appended is not None:
        return ServerCopy(uidvalidity=appended[0], uid=appended[1])
    # Without UIDPLUS the server does not say where the copy went: find its Message-ID
    # (ours, made of URL-safe characters, so it needs no quoting).
    selected = await imap.select(mailbox)
    found = await imap.uid_search(f'HEADER Message-ID "{built.message_id}"')
    if selected.uidvalidity is None or not found:
        return None
    return ServerCopy(uidvalidity=selected.uidvalidity, uid=max(found))


async def _expunge(imap: ImapConnection, mailbox: str, copy: ServerCopy) -> None:
    """Remove exactly this copy; with another UIDVALIDITY its UID means another message."""
    selected = await imap.select(mailbox)
    if selected.uidvalidity != copy.uidvalidity:
        return
    await imap.uid_store(str(copy.uid), "+FLAGS", ["\\Deleted"])
    # Plain EXPUNGE would also remove the user's other \Deleted messages.
    if imap.has("UIDPLUS"):
        await imap.uid_expunge(str(copy.uid))
