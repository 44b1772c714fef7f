"""SMTP client adapter over aiosmtplib; the only importer of aiosmtplib.

Two uses share one way of connecting (TLS or STARTTLS per `Security`) and logging in:

- `check_smtp_login` proves that an account's login works;
- `open_session` gives the outbox a logged-in connection that it drives one
  command at a time (`SmtpSession`). aiosmtplib's `sendmail` and `data` report a
  connection lost while sending the DATA command and one lost after the message's
  final "." alike, but a sender must tell them apart: before the "." nothing was
  sent, after it the server may have accepted the message. `SmtpSession.data`
  writes the message itself and raises `SmtpReplyLost` only for the latter.

A session returns every server reply as an `SmtpReply` for the caller to classify;
only a broken transport raises. The text of every error is safe to store and show:
server text goes through `safe_server_text`, and no error carries the password.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiosmtplib

from mailsvc.kit import sasl
from mailsvc.kit.mailserver import MailServer, Security, tls_failure_reason
from mailsvc.mime.text import safe_server_text

# Preferred first. PLAIN and LOGIN only ever travel inside TLS (or on a network the
# account's owner chose to trust); CRAM-MD5, which aiosmtplib would try first, makes
# the server keep a password equivalent and is deprecated (RFC 8314 era), so it is
# the last resort rather than the first choice.
_MECHANISMS: dict[str, Callable[[aiosmtplib.SMTP, str, str], Awaitable[object]]] = {
    "plain": aiosmtplib.SMTP.auth_plain,
    "login": aiosmtplib.SMTP.auth_login,
    "cram-md5": aiosmtplib.SMTP.auth_crammd5,
}
# Refusals of a mechanism rather than of the credentials (RFC 4954 §6: unrecognised,
# too weak, needs encryption), after which the next mechanism may still work. After
# any other refusal, a 535 above all, trying the same password again through
# another mechanism only counts one more failed login against the account.
_MECHANISM_REFUSALS = frozenset({504, 534, 538})

_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """A server reply; `text` is made safe to store and show (`safe_server_text`)."""

    code: int
    text: str

    @classmethod
    def from_server(cls, code: int, text: str) -> SmtpReply:
        """Wrap a reply as received, cleaning its text."""
        return cls(code=code, text=safe_server_text(text))

    @property
    def is_positive(self) -> bool:
        """A 2xx reply: the command succeeded."""
        return 200 <= self.code < 300

    @property
    def is_transient(self) -> bool:
        """A 4xx reply: the same command may succeed later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """A 5xx reply: repeating the same command will fail again."""
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class SmtpError(Exception):
    """Root of the adapter's errors; the message is safe to show to a client."""


class SmtpConnectError(SmtpError):
    """The server could not be reached, timed out, failed TLS, or dropped the connection.

    Raised by a session only while nothing of a message can have been accepted.
    `reply` is set when the server itself turned the connection away (a 4xx/5xx
    greeting, a refused EHLO or STARTTLS).
    """

    def __init__(self, message: str, *, reply: SmtpReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class SmtpAuthError(SmtpError):
    """The server refused the login.

    `reply` is the refusal (535: wrong credentials; 454: try again later), or
    `None` when no login was possible at all (no AUTH offered, no usable mechanism).
    """

    def __init__(self, message: str, *, reply: SmtpReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class SmtpReplyLost(SmtpError):
    """The whole message, final "." included, was written; its reply never came.

    The server may have accepted the message: the sender must not simply send it
    again.
    """


def message_size(message: bytes) -> int:
    """The message's size as SIZE (RFC 1870 §4) counts it: CRLF line ends, no dot-stuffing."""
    return len(_with_crlf(message))


def _with_crlf(message: bytes) -> bytes:
    message = _LINE_ENDING.sub(b"\r\n", message)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def _data_payload(message: bytes) -> bytes:
    """What follows the 354 reply (RFC 5321 §4.5.2): dot-stuffed lines, then "."."""
    return _LEADING_DOT.sub(b"..", _with_crlf(message)) + b".\r\n"


def _client(server: MailServer, *, io_timeout: float, tls: ssl.SSLContext) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=server.security is Security.TLS,
        # False, not None: with "none" we must not upgrade on our own initiative.
        start_tls=server.security is Security.STARTTLS,
        tls_context=tls,
        timeout=io_timeout,
    )


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    # aiosmtplib wraps a failed implicit-TLS handshake in SMTPConnectError (it is an
    # OSError to asyncio) but lets a failed STARTTLS handshake through as it is.
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ssl.SSLError):
            return candidate
    return None


def _connect_failure(server: MailServer, exc: Exception) -> SmtpConnectError:
    tls_error = _tls_error(exc)
    if tls_error is not None:
        reason = safe_server_text(tls_failure_reason(tls_error))
        return SmtpConnectError(f"TLS handshake failed: {reason}")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        reply = SmtpReply.from_server(exc.code, exc.message)
        return SmtpConnectError(f"{server.host}:{server.port} turned us away: {reply}", reply=reply)
    if isinstance(exc, TimeoutError):
        return SmtpConnectError(f"cannot connect to {server.host}:{server.port}: timed out")
    # aiosmtplib's own text repeats the address; the OS error beneath says what failed.
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    reason = getattr(cause, "strerror", None) or str(cause)
    reason = safe_server_text(reason) or type(exc).__name__
    return SmtpConnectError(f"cannot connect to {server.host}:{server.port}: {reason}")


def _lost(during: str, exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out during {during}"
    reason = safe_server_text(str(exc)) or type(exc).__name__
    return f"connection lost during {during}: {reason}"


async def _connect(
    server: MailServer, *, io_timeout: float, tls: ssl.SSLContext
) -> aiosmtplib.SMTP:
    client = _client(server, io_timeout=io_timeout, tls=tls)
    try:
        # On any failure, cancellation included, aiosmtplib closes the client itself.
        await client.connect()
        # STARTTLS already sent EHLO but had to forget its answer (RFC 3207 §4.2);
        # the extensions (AUTH, SIZE, SMTPUTF8) are those offered over TLS.
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
    except (aiosmtplib.SMTPException, OSError) as exc:
        client.close()
        raise _connect_failure(server, exc) from exc
    except BaseException:
        client.close()
        raise
    return client


async def _login_oauth(client: aiosmtplib.SMTP, server: MailServer) -> None:
    """AUTH with the access token by XOAUTH2 or OAUTHBEARER (RFC 7628), as offered."""
    assert server.access_token is not None
    mechanism = sasl.oauth_mechanism(client.server_auth_methods)
    if mechanism is None:
        advertised = " ".join(client.server_auth_methods).upper() or "none"
        raise SmtpAuthError(f"no OAuth2 login mechanism (the server offers: {advertised})")
    initial = sasl.initial_response(
        mechanism,
        user=server.username,
        token=server.access_token,
        host=server.host,
        port=server.port,
    )
    try:
        response = await client.execute_command(b"AUTH", mechanism.encode(), initial.encode())
        if response.code == aiosmtplib.SMTPStatus.auth_continue:
            # The server's error report (base64 JSON); the refusal follows our answer.
            answer = sasl.error_acknowledgement(mechanism).encode()
            response = await client.execute_command(answer)
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise SmtpConnectError(_lost("login", exc)) from exc
    if response.code != aiosmtplib.SMTPStatus.auth_successful:
        refusal = SmtpReply.from_server(response.code, response.message)
        raise SmtpAuthError(f"login refused: {refusal}", reply=refusal)


async def _login(client: aiosmtplib.SMTP, server: MailServer) -> None:
    if server.access_token is not None:
        await _login_oauth(client, server)
        return
    offered = [name for name in _MECHANISMS if name in client.server_auth_methods]
    if not offered:
        advertised = " ".join(client.server_auth_methods).upper() or "none"
        raise SmtpAuthError(f"no usable login mechanism (the server offers: {advertised})")
    refusal: SmtpReply | None = None
    for name in offered:
        try:
            await _MECHANISMS[name](client, server.username, server.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            refusal = SmtpReply.from_server(exc.code, exc.message)
            if exc.code not in _MECHANISM_REFUSALS:
                break
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpConnectError(_lost("login", exc)) from exc
        else:
            return
    raise SmtpAuthError(f"login refused: {refusal}", reply=refusal)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        # The outcome is already known; QUIT is a courtesy the server may not return.
        pass
    finally:
        client.close()


class SmtpSession:
    """A logged-in SMTP connection, driven one command at a time.

    Methods return the server's reply whatever its code. They raise
    `SmtpConnectError` when the connection fails (nothing of a message has been
    accepted yet) and `SmtpReplyLost` when it fails after a message was written in
    full; the session is then unusable. Build one with `open_session`.
    """

    def __init__(self, client: aiosmtplib.SMTP, *, io_timeout: float) -> None:
        self._client = client
        self._io_timeout = io_timeout

    def supports(self, extension: str) -> bool:
        """Whether the server's EHLO offered `extension` (case-insensitive)."""
        return self._client.supports_extension(extension)

    @property
    def size_limit(self) -> int | None:
        """The largest message the server accepts (SIZE, RFC 1870), if it declared one."""
        declared = self._client.esmtp_extensions.get("size", "").strip()
        # "SIZE" alone or "SIZE 0" declares the extension without a fixed limit.
        return int(declared) if declared.isdigit() and int(declared) > 0 else None

    async def mail(
        self, sender: str, *, options: Sequence[str] = (), utf8: bool = False
    ) -> SmtpReply:
        """MAIL FROM:<sender> with ESMTP `options`; `utf8` allows a non-ASCII address."""
        try:
            response = await self._client.mail(
                sender, options=options, encoding="utf-8" if utf8 else "ascii"
            )
        except aiosmtplib.SMTPResponseException as exc:
            return self._reply("MAIL FROM", exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpConnectError(_lost("MAIL FROM", exc)) from exc
        return SmtpReply.from_server(response.code, response.message)

    async def rcpt(self, recipient: str, *, utf8: bool = False) -> SmtpReply:
        """RCPT TO:<recipient>; `utf8` allows a non-ASCII address."""
        try:
            response = await self._client.rcpt(recipient, encoding="utf-8" if utf8 else "ascii")
        except aiosmtplib.SMTPResponseException as exc:
            return self._reply("RCPT TO", exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpConnectError(_lost("RCPT TO", exc)) from exc
        return SmtpReply.from_server(response.code, response.message)

    async def data(self, message: bytes) -> SmtpReply:
        """DATA, then the message and its final "."; the reply to the "." (RFC 5321 §4.1.1.4).

        If the server refuses the DATA command itself, that refusal is returned and
        nothing of the message was sent.

        Where the ambiguity starts: aiosmtplib's own `data` sends DATA, waits for
        354, hands the dot-stuffed message and its final "." to the transport in
        one non-blocking `write`, then waits for the reply; a drop in either wait
        surfaces as the same `SMTPServerDisconnected`. Here the steps are taken one
        by one, and the boundary is that `write`:

        - before it (DATA dropped or timed out before its 354, the transport
          already closing, or more than the 354 already read: a reply to a message
          not yet sent) nothing of the message has gone out: `SmtpConnectError`;
        - after it, every failure (drop, EOF, timeout, an unreadable or impossible
          reply) raises `SmtpReplyLost`. asyncio sends its buffer in the
          background and, on a reset, discards the rest without saying how much
          went out; and bytes that did go out may have reached a server that
          stored the message and lost the connection before its reply (RFC 5321
          §6.1, RFC 1047).

        A finer line ("the '.' was still in our buffer") cannot be observed
        reliably. Erring this way costs the caller one look in the Sent mailbox;
        erring the other way sends the message twice.
        """
        client = self._client
        try:
            start = await client.execute_command(b"DATA")
        except aiosmtplib.SMTPResponseException as exc:
            return self._reply("DATA", exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpConnectError(_lost("DATA", exc)) from exc
        if start.code != aiosmtplib.SMTPStatus.start_input:
            refusal = self._reply("DATA", start.code, start.message)
            if refusal.is_transient or refusal.is_permanent:
                return refusal
            # Anything else (a 250 above all) must not pass for the message's reply.
            client.close()
            raise SmtpConnectError(f"unexpected reply to DATA: {refusal}")
        protocol = client.protocol
        if protocol is None:
            raise SmtpConnectError("connection lost before the message was sent")
        # Bytes that came with the 354 (aiosmtplib keeps what it read past a reply in
        # `_buffer`; it has no public view of it) would be read as the reply to the
        # message: a server that answers a message it has not seen is out of step.
        if protocol._buffer:
            client.close()
            raise SmtpConnectError("the server replied before the message was sent")
        try:
            protocol.write(_data_payload(message))
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise SmtpConnectError("connection lost before the message was sent") from exc
        # From here on the server may hold the whole message.
        try:
            response = await protocol.read_response(timeout=self._io_timeout)
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Closed as aiosmtplib's own data() does: a reply arriving late must not
            # be read as the answer to the next command.
            client.close()
            raise SmtpReplyLost(self._no_reply(exc)) from exc
        reply = SmtpReply.from_server(response.code, response.message)
        if not (reply.is_positive or reply.is_transient or reply.is_permanent):
            client.close()
            raise SmtpReplyLost(f"unexpected reply to the end of the message: {reply}")
        return reply

    def _reply(self, command: str, code: int, text: str) -> SmtpReply:
        # aiosmtplib reports an unparsable reply with a negative code; the
        # connection is out of step with the server from then on.
        if code <= 0:
            self._client.close()
            raise SmtpConnectError(f"unreadable reply to {command}: {safe_server_text(text)}")
        return SmtpReply.from_server(code, text)

    def _no_reply(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError):
            return f"no reply to the end of the message within {self._io_timeout:g} s"
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return f"unreadable reply to the end of the message: {safe_server_text(exc.message)}"
        reason = safe_server_text(str(exc)) or type(exc).__name__
        return f"connection lost after the message was sent: {reason}"


@asynccontextmanager
async def open_session(
    server: MailServer, *, io_timeout: float, tls: ssl.SSLContext
) -> AsyncIterator[SmtpSession]:
    """Connect and log in; QUIT when the block ends normally, close when it raises.

    `io_timeout` bounds the connect, the TLS handshake and each reply. Raises
    `SmtpConnectError` or `SmtpAuthError` before the block runs. Cancellation
    closes the connection and propagates.
    """
    client = await _connect(server, io_timeout=io_timeout, tls=tls)
    try:
        await _login(client, server)
    except SmtpAuthError:
        # The connection itself is fine: leave politely.
        await _quit(client)
        raise
    except BaseException:
        client.close()
        raise
    try:
        yield SmtpSession(client, io_timeout=io_timeout)
    except BaseException:
        client.close()
        raise
    await _quit(client)


async def check_smtp_login(server: MailServer, *, io_timeout: float, tls: ssl.SSLContext) -> None:
    """Connect, log in and quit; raises `SmtpConnectError` or `SmtpAuthError`."""
    async with open_session(server, io_timeout=io_timeout, tls=tls):
        pass
