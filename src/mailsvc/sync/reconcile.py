"""The server's mailbox list, stored: created, renamed and deleted mailboxes.

`plan.reconcile_mailboxes` decides what changed; this applies it in the caller's
transaction, with a change event for each, so the rows and their events commit
together.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.event.repository import ChangeRepository
from mailsvc.imap import wire
from mailsvc.imap.mailboxes import is_selectable, mailbox_role
from mailsvc.mirror.repository import MailboxRepository
from mailsvc.models import Mailbox
from mailsvc.sync import plan as planning


async def reconcile(
    session: AsyncSession,
    tenant_id: str,
    account_id: uuid.UUID,
    *,
    listed: list[wire.ListedMailbox],
    statuses: dict[str, wire.MailboxStatus],
    options: planning.SyncOptions,
    gmail: bool = False,
) -> list[Mailbox]:
    """Store the wanted mailboxes of `listed`; every mailbox row, INBOX first.

    `gmail`: the account is mirrored the Gmail way (`plan.gmail_store_mode`), and
    each row records the label its folder shows (`Mailbox.gmail_label`).
    """
    # Gmail marks its special folders; there a folder's name makes it no role.
    roles = [(m, mailbox_role(m, by_name=not gmail)) for m in listed]
    role_of = {m.name: role for m, role in roles}
    if gmail:
        wanted = planning.gmail_wanted(roles, options)
    else:
        wanted = [m for m, role in roles if options.wants(m, role)]
    repository = MailboxRepository(session, tenant_id)
    stored = await repository.for_account(account_id)
    by_name = {m.name: m for m in stored}
    validity = {name: s.uidvalidity for name, s in statuses.items() if s.uidvalidity is not None}
    changes = planning.reconcile_mailboxes(
        [planning.StoredMailbox(m.name, m.uidvalidity) for m in stored], wanted, validity
    )
    events: list[tuple[str, dict[str, Any]]] = []
    for name in changes.deleted:
        gone = by_name[name]
        await repository.delete(gone.id)
        events.append(("mailbox.deleted", {"mailbox_id": str(gone.id), "name": name}))
    for old_name, listing in changes.renamed:
        moved = by_name[old_name]
        moved.name = listing.name
        events.append(
            ("mailbox.renamed", {"mailbox_id": str(moved.id), "old_name": old_name,
                                 "name": listing.name})
        )  # fmt: skip
    for listing in changes.created:
        mailbox = await repository.add(
            Mailbox(
                account_id=account_id,
                name=listing.name,
                delimiter=listing.delimiter,
                special_use=role_of[listing.name],
                attributes=sorted(listing.attributes),
                selectable=is_selectable(listing),
                gmail_label=planning.gmail_label(listing) if gmail else None,
            )
        )
        events.append(
            ("mailbox.created", {"mailbox_id": str(mailbox.id), "name": listing.name,
                                 "role": mailbox.special_use})
        )  # fmt: skip
    for listing in [*changes.kept, *(new for _, new in changes.renamed)]:
        row = by_name.get(listing.name) or next(m for m in stored if m.name == listing.name)
        row.attributes = sorted(listing.attributes)
        row.special_use = role_of[listing.name]
        row.selectable = is_selectable(listing)
        row.gmail_label = planning.gmail_label(listing) if gmail else None
    await ChangeRepository(session, tenant_id).append_many(account_id, events)
    await session.flush()
    current = await repository.for_account(account_id)
    # INBOX first: it is what users look at while a big initial sync runs.
    return sorted(current, key=lambda m: (m.special_use != "inbox", m.name))
