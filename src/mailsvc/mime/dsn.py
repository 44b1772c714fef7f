"""Delivery status notifications (RFC 3464): which recipients bounced, and why.

Only real reports are read: a message whose top-level type is multipart/report
with `report-type=delivery-status` (or RFC 6533's `global-delivery-status`, the
same format for internationalized mail). Free-text bounces ("Mail delivery
failed" prose from old MTAs) return None: guessing from prose would take
ordinary mail for bounces, and every current MTA (Postfix, Exim, Exchange,
Gmail) sends RFC 3464 reports.

A report has three parts: a human-readable notice, the machine-readable
message/delivery-status, and the returned message (message/rfc822) or only its
header (text/rfc822-headers). The status part is a sequence of header blocks
separated by blank lines: the per-message fields (Reporting-MTA,
Original-Envelope-Id...) and one block per recipient (Final-Recipient, Action,
Status, Diagnostic-Code...). The `email` package hands that part over as a list
of messages, one per block; it is turned back into text and read by one parser,
which also covers a status part encoded in base64 or quoted-printable, where
the package's blocks are meaningless.

`original_message_id` is the Message-ID of the returned message or header, the
id mailsvc gave the message it sent. `Original-Envelope-Id` is reported on its
own (`original_envelope_id`) and never stands in for it: it is whatever the
sender passed as ENVID, not a Message-ID.

Reports are hostile input. Only the first `MAX_REPORT_BYTES` are read (the
notice and the status come first, the returned message last, and only its
header is needed), values are bounded and made printable, a malformed Action or
Status reads as None, and `parse_dsn` never raises: what cannot be read is
missing from the result, or the result is None.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import Compat32

from mailsvc.mime.text import safe_server_text

MAX_REPORT_BYTES = 500_000
MAX_RECIPIENTS = 1000
ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})

_REPORT_TYPES = frozenset({"delivery-status", "global-delivery-status"})
_STATUS_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_RETURNED_PARTS = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"}
)
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_TYPED_VALUE = re.compile(r"^\s*[A-Za-z0-9-]{1,40}\s*;\s*")
_LINE_END = re.compile(r"\r\n|\r|\n")
_BLOCK_SEPARATOR = re.compile(r"\n(?:[ \t]*\n)+")
_FIELD = re.compile(r"([!-9;-~]+)[ \t]*:(.*)")
_MAX_STATUS_CHARS = 256_000
_MAX_ADDRESS_CHARS = 320
_MAX_DIAGNOSTIC_CHARS = 500

# The returned Message-ID only serves to find the outbox entry that sent it, and
# mailsvc writes printable ASCII ids without spaces (compose.validate.ID_TEXT).
_SENT_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient's block of a report.

    `final_recipient` and `original_recipient` are addresses without their type
    ("rfc822;"). `action` is one of `ACTIONS` and `status` an RFC 3463 code like
    "5.1.1"; either is None when missing or malformed. `diagnostic` is the remote
    server's reply (Diagnostic-Code without its type), printable, on one line,
    bounded.
    """

    final_recipient: str | None
    action: str | None
    status: str | None
    diagnostic: str | None = None
    original_recipient: str | None = None

    @property
    def is_permanent_failure(self) -> bool:
        """Failed with a permanent (5.x.x) status: retrying cannot help."""
        return self.action == "failed" and self.status is not None and self.status[0] == "5"


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a delivery status notification says about a message mailsvc sent.

    `original_message_id` is in `<id>` form, as mailsvc writes Message-IDs.
    """

    original_message_id: str | None
    recipients: tuple[BouncedRecipient, ...]
    original_envelope_id: str | None = None
    reporting_mta: str | None = None

    @property
    def is_permanent_failure(self) -> bool:
        """Some recipient failed permanently (action failed, status 5.x.x)."""
        return any(recipient.is_permanent_failure for recipient in self.recipients)


def parse_dsn(raw: bytes) -> Bounce | None:
    """The report in `raw` (a whole message), or None if it is not an RFC 3464
    delivery status notification or has no readable status part. Never raises."""
    try:
        return _parse(raw[:MAX_REPORT_BYTES])
    except Exception:  # a hostile report must not break whoever reads the mailbox
        return None


class _RawHeaders(Compat32):
    """compat32, but header values come back as parsed, 8-bit bytes as surrogate
    escapes, instead of as `Header` objects that have already replaced them."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_READER = _RawHeaders()


def _parse(raw: bytes) -> Bounce | None:
    report = message_from_bytes(raw, policy=_READER)
    if report.get_content_type() != "multipart/report":
        return None
    report_type = report.get_param("report-type")
    if not isinstance(report_type, str) or report_type.strip().lower() not in _REPORT_TYPES:
        return None
    payload = report.get_payload()
    if not isinstance(payload, list):
        return None
    parts = [part for part in payload if isinstance(part, Message)]
    status_parts = [part for part in parts if part.get_content_type() in _STATUS_PARTS]
    if not status_parts:
        return None
    per_message: dict[str, str] = {}
    recipients: list[BouncedRecipient] = []
    for block in _blocks(_status_text(status_parts[0])):
        if "final-recipient" in block:
            if len(recipients) < MAX_RECIPIENTS:
                recipients.append(_recipient(block))
        elif not per_message and not recipients:
            per_message = block
    return Bounce(
        original_message_id=_returned_message_id(parts),
        recipients=tuple(recipients),
        original_envelope_id=_bounded(per_message.get("original-envelope-id")),
        reporting_mta=_bounded(_untyped(per_message.get("reporting-mta"))),
    )


def _status_text(part: Message) -> str:
    """The body of the status part as text, whichever way the parser left it."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        data = part.get_payload(decode=True)  # undoes base64 and quoted-printable
        return _decoded(data[:_MAX_STATUS_CHARS]) if isinstance(data, bytes) else ""
    blocks = (_block_bytes(block) for block in payload if isinstance(block, Message))
    data = b"\n\n".join(blocks)[:_MAX_STATUS_CHARS]
    # The parser split the blocks before decoding anything: an encoded body came
    # out as one block of encoded lines, decoded now.
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        try:
            return _decoded(base64.b64decode(data))
        except (binascii.Error, ValueError):
            return ""
    if encoding == "quoted-printable":
        return _decoded(quopri.decodestring(data))
    return _decoded(data)


def _block_bytes(block: Message) -> bytes:
    """One block as the parser found it: its fields, then whatever it took for a body
    (all of the rest, for status types the parser reads as one message)."""
    lines = [_raw_bytes(f"{name}: {value}") for name, value in block.items()]
    body = block.get_payload(decode=True)
    if isinstance(body, bytes) and body:
        lines.append(body)
    return b"\n".join(lines)


def _blocks(text: str) -> list[dict[str, str]]:
    """Header blocks of the status part; in each, names are lower-cased, the first of
    a repeated field wins, and folded lines are unfolded."""
    blocks: list[dict[str, str]] = []
    for chunk in _BLOCK_SEPARATOR.split(_LINE_END.sub("\n", text)):
        # Lines are collected and joined once: a field folded over many thousands of
        # lines must not cost a copy per line.
        fields: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t"):
                if current is not None:
                    current.append(line.strip())
                continue
            match = _FIELD.match(line)
            if match is None or match.group(1).lower() in fields:
                current = None  # garbage, or a repeated field: the first one wins
                continue
            current = fields[match.group(1).lower()] = [match.group(2).strip()]
        if fields:
            blocks.append({name: " ".join(lines) for name, lines in fields.items()})
    return blocks


def _recipient(block: dict[str, str]) -> BouncedRecipient:
    action = (block.get("action") or "").split("(")[0].strip().lower()
    status_words = (block.get("status") or "").split()
    status = status_words[0] if status_words else ""
    diagnostic = block.get("diagnostic-code")
    return BouncedRecipient(
        final_recipient=_address(block.get("final-recipient")),
        action=action if action in ACTIONS else None,
        status=status if _STATUS.fullmatch(status) else None,
        diagnostic=_bounded(_untyped(diagnostic), limit=_MAX_DIAGNOSTIC_CHARS),
        original_recipient=_address(block.get("original-recipient")),
    )


def _returned_message_id(parts: list[Message]) -> str | None:
    """The Message-ID of the first returned message or header among the parts."""
    for part in parts:
        if part.get_content_type() not in _RETURNED_PARTS:
            continue
        # The parser reads every message/* part as a message (a list of one), and
        # text/rfc822-headers as text, to be parsed here.
        payload = part.get_payload()
        if isinstance(payload, list):
            returned = payload[0] if payload and isinstance(payload[0], Message) else None
        else:
            data = part.get_payload(decode=True)
            returned = message_from_bytes(data, policy=_READER) if isinstance(data, bytes) else None
        value = returned.get("Message-ID") if returned is not None else None
        found = _SENT_MESSAGE_ID.search(_decoded(_raw_bytes(str(value)))) if value else None
        return found.group(0) if found else None
    return None


def _address(value: str | None) -> str | None:
    text = _untyped(value)
    if text is None:
        return None
    text = text.strip().strip("<>").strip()
    return _bounded(text, limit=_MAX_ADDRESS_CHARS)


def _untyped(value: str | None) -> str | None:
    """A typed field's value without its type: "rfc822; a@b" -> "a@b"."""
    return None if value is None else _TYPED_VALUE.sub("", value, count=1)


def _bounded(value: str | None, *, limit: int = _MAX_ADDRESS_CHARS) -> str | None:
    if value is None:
        return None
    return safe_server_text(value, limit=limit) or None


def _raw_bytes(text: str) -> bytes:
    # The compat32 parser keeps 8-bit bytes as surrogate escapes; get them back.
    return text.encode("utf-8", "surrogateescape")


def _decoded(data: bytes) -> str:
    return data.decode("utf-8", "replace")
