"""Short-lived IMAP connections for the messages API (streaming and write-back).

Requests never borrow the sync's connections, so a read or a change never waits
behind a long FETCH or an IDLE (docs/sync.md). Each opens its own connection,
selects the message's mailbox, checks that its UIDVALIDITY is still the stored one
(otherwise the stored UIDs name other messages), and logs out at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog

from mailsvc.account.logins import AccountLogins
from mailsvc.errors import BadGatewayError, ConflictError
from mailsvc.imap.connection import ImapConnection
from mailsvc.imap.errors import (
    ImapAuthError,
    ImapCommandError,
    ImapConnectError,
    ImapProtocolError,
)
from mailsvc.kit.resources import Resources
from mailsvc.models import Account, Mailbox

log = structlog.get_logger("mailsvc.account.connect")


def account_imap(
    resources: Resources, account: Account
) -> AbstractAsyncContextManager[ImapConnection]:
    """A logged-in connection to the account's IMAP server for one piece of work."""
    return resources.component(AccountLogins).imap_session(account)


@asynccontextmanager
async def open_account(resources: Resources, account: Account) -> AsyncIterator[ImapConnection]:
    """A logged-in connection; IMAP failures inside become 502 problems."""
    try:
        async with account_imap(resources, account) as connection:
            yield connection
    except ImapAuthError as exc:
        raise BadGatewayError(
            f"the IMAP server refused the login: {exc}", code="imap_login_refused"
        ) from exc
    except ImapCommandError as exc:
        raise BadGatewayError(f"the IMAP server refused: {exc}", code="imap_refused") from exc
    except ImapConnectError as exc:
        raise BadGatewayError(str(exc), code="imap_unavailable") from exc
    except ImapProtocolError as exc:
        # A server bug rather than a refusal: logged, as the client only sees the 502.
        log.warning("imap.protocol_error", account_id=str(account.id), error=str(exc))
        raise BadGatewayError(
            f"the IMAP server's answer could not be read: {exc}", code="imap_unreadable"
        ) from exc


async def select_mailbox(connection: ImapConnection, mailbox: Mailbox, *, readonly: bool) -> None:
    """SELECT (or EXAMINE) `mailbox`, refusing one whose UIDVALIDITY changed."""
    selected = await connection.select(mailbox.name, readonly=readonly)
    if mailbox.uidvalidity is not None and selected.uidvalidity != mailbox.uidvalidity:
        raise ConflictError(
            "the mailbox was recreated on the server; a sync will catch up",
            code="mailbox_changed",
        )


@asynccontextmanager
async def open_mailbox(
    resources: Resources, account: Account, mailbox: Mailbox, *, readonly: bool
) -> AsyncIterator[ImapConnection]:
    """A connection with `mailbox` selected (see `open_account`)."""
    async with open_account(resources, account) as connection:
        await select_mailbox(connection, mailbox, readonly=readonly)
        yield connection
