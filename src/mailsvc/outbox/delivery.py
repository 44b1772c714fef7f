"""One delivery attempt of an outbox message over SMTP, and what its outcome means.

`deliver` runs one SMTP transaction (RFC 5321 §3.3) through `outbox.smtp` and
classifies how it ended, the way a mail transfer agent's client does, so that the
outbox knows whether to record a success, retry with backoff, give up, or first
look for the message before retrying:

    connect, TLS ── unreachable, TLS failure, drop, timeout, 4xx greeting ── RETRY
                 └─ 5xx greeting, EHLO or STARTTLS reply ─────────────────── FAILED
    login ── 454, other 4xx, an impossible code: RETRY; 535, other 5xx, no usable AUTH: FAILED
    SIZE, SMTPUTF8 ── the server cannot take the message ─ FAILED, nothing sent
    MAIL FROM ── 4xx: RETRY, 5xx: FAILED
    RCPT TO, each ── none accepted: any 4xx among them → RETRY, all 5xx → FAILED
                  └─ some accepted: send to those; the rest in `refused_recipients`
    DATA ── 4xx or drop before the final "." is written: RETRY; 5xx: FAILED
    final "." written ── reply 2xx: DELIVERED, 4xx: RETRY, 5xx: FAILED
                      └─ no reply (drop, timeout, garbage) ── AMBIGUOUS

AMBIGUOUS means the server may have accepted the message: the caller looks for its
Message-ID in the Sent mailbox (or trusts the provider's own copy) before sending
again. Where exactly that boundary lies is explained in `SmtpSession.data`.

A 421 reply at any step means the server is closing the connection (§3.8), so it
retries the whole attempt even when it answers one RCPT among several.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mailsvc.kit.mailserver import MailServer
from mailsvc.smtp.client import (
    SmtpAuthError,
    SmtpConnectError,
    SmtpReply,
    SmtpReplyLost,
    SmtpSession,
    message_size,
    open_session,
)

__all__ = ["DeliveryResult", "Outcome", "SmtpReply", "deliver"]

_SERVICE_CLOSING = 421
# Characters that cannot stand in an envelope address on an SMTP command line.
_UNSAFE_IN_ADDRESS = re.compile(r"[\s<>\x00-\x1f\x7f]")


class Outcome(StrEnum):
    """How a delivery attempt ended, as far as the sender can know."""

    DELIVERED = "delivered"
    """The server accepted the message for every recipient not in `refused_recipients`."""
    RETRY = "retry"
    """Nothing was accepted, for a reason that may pass: try again later."""
    FAILED = "failed"
    """Nothing was accepted and trying again will not change that."""
    AMBIGUOUS = "ambiguous"
    """The message was sent in full but its reply was lost: it may have been accepted."""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one `deliver` attempt and the evidence for it.

    - `reply`: the server reply that decided the outcome (the reply to the final
      "." once the message was sent); `None` when no reply decided it.
    - `error`: what went wrong, in our words, when it was not the transaction's
      MAIL, RCPT or DATA being refused: connection refused, TLS, a timeout or a
      drop, the login refused (then `reply` is the refusal), SIZE or SMTPUTF8 out
      of reach. It never contains the account's password.
    - `refused_recipients`: recipients the server refused at RCPT TO, with its
      reply. When others were accepted the message went to those only; when none
      was, this holds all of them.
    """

    outcome: Outcome
    reply: SmtpReply | None = None
    error: str | None = None
    refused_recipients: dict[str, SmtpReply] = field(default_factory=dict)

    @property
    def deferred_recipients(self) -> tuple[str, ...]:
        """Recipients refused with a 4xx reply while others accepted the message.

        A partially accepted send is DELIVERED and is not retried as a whole (that
        would send the accepted recipients a second copy). These recipients never
        received it and may succeed later: the caller retries them alone by calling
        `deliver` again with just them (same message, same Message-ID). Those
        refused with 5xx are for the caller to report as failed.
        """
        if self.outcome is not Outcome.DELIVERED:
            return ()
        return tuple(
            address for address, reply in self.refused_recipients.items() if reply.is_transient
        )


# Gives the server to send through; given the server whose login was just refused,
# one with a renewed login (an OAuth2 token refreshed). Raises the adapter's
# SmtpAuthError or SmtpConnectError when there is none.
Login = Callable[[MailServer | None], Awaitable[MailServer]]


async def deliver(
    server: MailServer | Login,
    *,
    envelope_from: str,
    recipients: Sequence[str],
    message: bytes,
    io_timeout: float,
    tls: ssl.SSLContext,
    smtputf8: bool = False,
) -> DeliveryResult:
    """Send `message` to `recipients` through `server` once; classify how it went.

    `envelope_from` is the MAIL FROM address ("" for the null reverse-path);
    `message` is the complete RFC 5322 message, whose Message-ID the caller keeps
    to resolve an AMBIGUOUS outcome. `smtputf8` asks for SMTPUTF8 (RFC 6531), which
    non-ASCII addresses or headers need; a server that does not offer it fails the
    attempt without anything being sent. Likewise a message larger than the SIZE
    the server declares. `io_timeout` bounds the connect and each reply.

    Server behaviour never raises: every refusal, drop or timeout is a result.
    Raises `ValueError` for an envelope the caller should have refused: no
    recipients, an address with spaces, angle brackets or control characters, or a
    non-ASCII address without `smtputf8`.

    `server` may be a `Login` instead: a login it gives that the server refuses is
    renewed once and tried again (nothing of the message has been sent by then),
    which is how an OAuth2 token that expired early is replaced without a failure.

    Every path closes the connection (with QUIT once logged in and still in step).
    A cancellation closes it and propagates; if it lands after the message was
    written, the attempt is as ambiguous as a lost reply.
    """
    _check_envelope(envelope_from, recipients, smtputf8=smtputf8)

    async def attempt(target: MailServer) -> DeliveryResult:
        async with open_session(target, io_timeout=io_timeout, tls=tls) as session:
            return await _transaction(
                session,
                envelope_from=envelope_from,
                recipients=recipients,
                message=message,
                smtputf8=smtputf8,
            )

    try:
        if isinstance(server, MailServer):
            return await attempt(server)
        first = await server(None)
        try:
            return await attempt(first)
        except SmtpAuthError as exc:
            # Only a token can be renewed; a refused password is refused again.
            if first.access_token is None or (exc.reply is not None and exc.reply.is_transient):
                raise
        return await attempt(await server(first))
    except SmtpReplyLost as exc:
        return DeliveryResult(Outcome.AMBIGUOUS, error=str(exc))
    except SmtpAuthError as exc:
        # Only a 5xx (535 above all) or no usable mechanism is a final refusal; a code
        # no login answer has (999, 250) is a server in trouble, as in _outcome_of_refusal.
        if exc.reply is not None and not exc.reply.is_permanent:
            return DeliveryResult(Outcome.RETRY, reply=exc.reply, error=str(exc))
        return DeliveryResult(Outcome.FAILED, reply=exc.reply, error=str(exc))
    except SmtpConnectError as exc:
        if exc.reply is not None and exc.reply.is_permanent:
            return DeliveryResult(Outcome.FAILED, reply=exc.reply, error=str(exc))
        return DeliveryResult(Outcome.RETRY, reply=exc.reply, error=str(exc))


def _check_envelope(envelope_from: str, recipients: Sequence[str], *, smtputf8: bool) -> None:
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    # envelope_from alone may be empty: the null reverse-path of bounces.
    if not all(recipients):
        raise ValueError("empty recipient address")
    for address in (envelope_from, *recipients):
        if _UNSAFE_IN_ADDRESS.search(address):
            raise ValueError(f"not an envelope address: {address!r}")
        if not smtputf8 and not address.isascii():
            raise ValueError(f"{address!r} is not ASCII: it needs smtputf8=True")


async def _transaction(
    session: SmtpSession,
    *,
    envelope_from: str,
    recipients: Sequence[str],
    message: bytes,
    smtputf8: bool,
) -> DeliveryResult:
    if smtputf8 and not session.supports("SMTPUTF8"):
        return DeliveryResult(
            Outcome.FAILED,
            error="the message needs SMTPUTF8 (internationalized addresses or headers) "
            "and the server does not offer it",
        )
    size = message_size(message)
    limit = session.size_limit
    if limit is not None and size > limit:
        return DeliveryResult(
            Outcome.FAILED,
            error=f"the message is {size} bytes and the server accepts at most {limit}",
        )
    reply = await session.mail(
        envelope_from, options=_mail_options(session, message, size, smtputf8), utf8=smtputf8
    )
    if not reply.is_positive:
        return DeliveryResult(_outcome_of_refusal(reply), reply=reply)

    refused: dict[str, SmtpReply] = {}
    for recipient in recipients:
        reply = await session.rcpt(recipient, utf8=smtputf8)
        if reply.code == _SERVICE_CLOSING:
            return DeliveryResult(Outcome.RETRY, reply=reply, refused_recipients=refused)
        if not reply.is_positive:
            refused[recipient] = reply
    if len(refused) == len(recipients):
        # Any transient refusal makes the attempt worth repeating: the permanent
        # ones will be refused again, but the others may be accepted then.
        first = next(iter(refused.values()))
        decisive = next((r for r in refused.values() if not r.is_permanent), first)
        return DeliveryResult(
            _outcome_of_refusal(decisive), reply=decisive, refused_recipients=refused
        )

    reply = await session.data(message)
    if reply.is_positive:
        return DeliveryResult(Outcome.DELIVERED, reply=reply, refused_recipients=refused)
    return DeliveryResult(_outcome_of_refusal(reply), reply=reply, refused_recipients=refused)


def _mail_options(session: SmtpSession, message: bytes, size: int, smtputf8: bool) -> list[str]:
    options: list[str] = []
    if session.supports("SIZE"):
        # Declared up front (RFC 1870 §6) so a server short of space says so now,
        # not after the whole message was sent.
        options.append(f"SIZE={size}")
    if session.supports("8BITMIME") and not message.isascii():
        options.append("BODY=8BITMIME")
    if smtputf8:
        options.append("SMTPUTF8")
    return options


def _outcome_of_refusal(reply: SmtpReply) -> Outcome:
    # Only a 5xx is known to be final; anything else odd (a 1xx or 3xx where none
    # belongs) is a server in trouble, which may be over it next time.
    return Outcome.FAILED if reply.is_permanent else Outcome.RETRY
