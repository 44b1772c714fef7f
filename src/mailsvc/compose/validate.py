"""Checks of everything a user puts into a message; each failure names its field.

Header injection is refused here, not escaped later: `check_header_value` rejects
CR, LF, NUL and every other control character but TAB (and the Unicode line and
paragraph separators, which `str.splitlines` treats as line breaks) in every value
that ends up in a header: subject, display names, custom header names and values,
file names and content ids. Addresses go through email-validator
(`mailsvc.kit.addresses`), which allows none of them either.

Custom headers are an allow-list (`ALLOWED_CUSTOM_HEADERS` plus any `X-` name made
of letters, digits and hyphens); a name that mailsvc sets itself, or that
describes transport or authentication (`STRUCTURAL_HEADERS`, `Content-*`,
`Resent-*`, `ARC-*`), can never be given. Their values are not checked beyond
being safe header text: what `Importance: high` means is the recipient's business.

Field names are those of the API: `subject`, `from.address`, `to[1].name`,
`attachments[0].filename`, `headers.X-Campaign`.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from mailsvc.compose.model import AttachmentSpec, Composition, Mailbox
from mailsvc.kit.addresses import normalize_address

MAX_RECIPIENTS = 1000
"""Hard cap on to + cc + bcc; the API applies its own, lower, configured limit."""
MAX_SUBJECT_CHARS = 1000
MAX_NAME_CHARS = 256
MAX_FILENAME_CHARS = 255
MAX_CONTENT_ID_CHARS = 250
MAX_MESSAGE_ID_CHARS = 250
MAX_CUSTOM_HEADERS = 50
MAX_HEADER_NAME_CHARS = 64
MAX_HEADER_VALUE_CHARS = 2000
# A header line may not exceed 998 octets and can only be folded at whitespace, so
# one word must fit on a line together with the longest allowed name.
MAX_HEADER_WORD_CHARS = 900

ALLOWED_CUSTOM_HEADERS = frozenset(
    {
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "auto-submitted",
        "precedence",
        "importance",
        "sensitivity",
        "keywords",
        "comments",
        "organization",
    }
)
"""Custom header names allowed besides `X-*`, in lower case."""

STRUCTURAL_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "received",
        "return-path",
        "delivered-to",
        "dkim-signature",
        "authentication-results",
        "received-spf",
        "disposition-notification-to",
        "return-receipt-to",
    }
)
"""Names that a custom header can never take, in lower case (with the prefixes
`content-`, `resent-` and `arc-`)."""
_STRUCTURAL_PREFIXES = ("content-", "resent-", "arc-")

_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
ID_TEXT = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")
"""What a Message-ID or Content-ID may hold inside its angle brackets here: printable
ASCII without spaces and angle brackets (a superset of RFC 5322's msg-id)."""
# Controls (TAB aside), line and paragraph separators, and lone surrogates, which
# cannot be encoded at all.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_ATTACHABLE_MESSAGES = frozenset({"message/rfc822"})


class CompositionError(ValueError):
    """A value of a composition that cannot be sent; `field` names it for the API."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_header_value(field: str, value: str, *, max_chars: int = MAX_HEADER_VALUE_CHARS) -> str:
    """`value` unchanged if it is safe in a header field: no control characters but
    TAB, no line breaks of any kind, at most `max_chars` characters."""
    if len(value) > max_chars:
        raise CompositionError(field, f"is longer than {max_chars} characters")
    for char in value:
        if char != "\t" and unicodedata.category(char) in _UNSAFE_CATEGORIES:
            raise CompositionError(field, f"must not contain the control character {char!r}")
    return value


def check_address(field: str, address: str) -> str:
    """The normalized form of `address`, checked by email-validator without DNS."""
    check_header_value(field, address, max_chars=MAX_HEADER_VALUE_CHARS)
    try:
        return normalize_address(address)
    except ValueError as exc:
        raise CompositionError(field, str(exc)) from exc


def check_mailbox(field: str, mailbox: Mailbox) -> Mailbox:
    """`mailbox` with its address normalized and a blank display name dropped."""
    address = check_address(f"{field}.address", mailbox.address)
    name = mailbox.name
    if name is not None:
        check_header_value(f"{field}.name", name, max_chars=MAX_NAME_CHARS)
        name = name.strip() or None
    return Mailbox(address=address, name=name)


def check_mailboxes(field: str, mailboxes: Sequence[Mailbox]) -> tuple[Mailbox, ...]:
    """Each mailbox of a list checked; errors name the item, e.g. `reply_to[2].address`."""
    return tuple(check_mailbox(f"{field}[{index}]", item) for index, item in enumerate(mailboxes))


def check_recipients(
    to: Sequence[Mailbox], cc: Sequence[Mailbox], bcc: Sequence[Mailbox], *, limit: int
) -> tuple[tuple[Mailbox, ...], tuple[Mailbox, ...], tuple[Mailbox, ...]]:
    """To, cc and bcc checked: at least one recipient, at most `limit` in all.

    Counted before any address is parsed, so an oversized list costs nothing.
    """
    lists = {"to": to, "cc": cc, "bcc": bcc}
    if not any(lists.values()):
        raise CompositionError("to", "at least one recipient is required in to, cc or bcc")
    seen = 0
    for name, mailboxes in lists.items():
        seen += len(mailboxes)
        if seen > limit:
            raise CompositionError(name, f"more than {limit} recipients in to, cc and bcc")
    return check_mailboxes("to", to), check_mailboxes("cc", cc), check_mailboxes("bcc", bcc)


def check_custom_header(name: str, value: str) -> tuple[str, str]:
    """A custom header's name and its value stripped, if the name is allowed and the
    value is safe and foldable."""
    field = f"headers.{_shown(name)}"
    if len(name) > MAX_HEADER_NAME_CHARS or not _HEADER_NAME.fullmatch(name):
        raise CompositionError(
            field, "a header name is letters, digits and hyphens, starting with a letter or digit"
        )
    lowered = name.lower()
    if lowered in STRUCTURAL_HEADERS or lowered.startswith(_STRUCTURAL_PREFIXES):
        raise CompositionError(field, f"{name} is set by mailsvc and cannot be a custom header")
    if not lowered.startswith("x-") and lowered not in ALLOWED_CUSTOM_HEADERS:
        allowed = ", ".join(sorted(ALLOWED_CUSTOM_HEADERS))
        raise CompositionError(field, f"only X-* headers and these are allowed: {allowed}")
    stripped = check_header_value(field, value).strip()
    if not stripped:
        raise CompositionError(field, "must not be empty")
    if any(len(word) > MAX_HEADER_WORD_CHARS for word in stripped.split()):
        raise CompositionError(
            field, f"has a word longer than {MAX_HEADER_WORD_CHARS} characters, which cannot fold"
        )
    return name, stripped


def check_custom_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """All custom headers checked; a name given twice (in any case) is refused."""
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise CompositionError("headers", f"more than {MAX_CUSTOM_HEADERS} custom headers")
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        checked_name, checked_value = check_custom_header(name, value)
        if checked_name.lower() in seen:
            raise CompositionError(f"headers.{checked_name}", "is given twice")
        seen.add(checked_name.lower())
        checked[checked_name] = checked_value
    return checked


def check_content_type(field: str, value: str) -> str:
    """A bare "type/subtype" media type (RFC 6838 names, no parameters), lower-cased."""
    lowered = value.strip().lower()
    if not _CONTENT_TYPE.fullmatch(lowered):
        raise CompositionError(field, 'must be a media type like "application/pdf"')
    return lowered


def check_content_id(field: str, value: str) -> str:
    """A content id without its angle brackets; refers to the part as `cid:<id>`."""
    check_header_value(field, value, max_chars=MAX_CONTENT_ID_CHARS + 2)
    bare = value.strip()
    if bare.startswith("<") and bare.endswith(">"):
        bare = bare[1:-1]
    if not ID_TEXT.fullmatch(bare) or len(bare) > MAX_CONTENT_ID_CHARS:
        raise CompositionError(
            field, "must be printable ASCII without spaces or angle brackets, like logo@example"
        )
    return bare


def check_message_id(field: str, value: str) -> str:
    """A Message-ID in its header form, `<left@right>`; accepted with or without brackets."""
    check_header_value(field, value, max_chars=MAX_MESSAGE_ID_CHARS + 2)
    bare = value.strip()
    if bare.startswith("<") and bare.endswith(">"):
        bare = bare[1:-1]
    left, at, right = bare.rpartition("@")
    if not (at and left and right and ID_TEXT.fullmatch(bare)):
        raise CompositionError(field, "must look like <unique@domain>, printable ASCII")
    return f"<{bare}>"


def check_attachment(field: str, attachment: AttachmentSpec) -> AttachmentSpec:
    """An attachment with its file name stripped and its type and content id normalized.

    Multipart types are structure, not files, and of the message types only
    message/rfc822 (an .eml file) can be attached as it is.
    """
    filename = check_header_value(
        f"{field}.filename", attachment.filename, max_chars=MAX_FILENAME_CHARS
    ).strip()
    if not filename:
        raise CompositionError(f"{field}.filename", "must not be empty")
    content_type = check_content_type(f"{field}.content_type", attachment.content_type)
    if content_type.startswith("multipart/") or (
        content_type.startswith("message/") and content_type not in _ATTACHABLE_MESSAGES
    ):
        raise CompositionError(f"{field}.content_type", f"{content_type} cannot be attached")
    content_id = attachment.content_id
    if content_id is not None:
        content_id = check_content_id(f"{field}.content_id", content_id)
    return dataclasses.replace(
        attachment, filename=filename, content_type=content_type, content_id=content_id
    )


def check_attachments(attachments: Iterable[AttachmentSpec]) -> tuple[AttachmentSpec, ...]:
    """Each attachment checked; two parts with one content id are refused."""
    checked: list[AttachmentSpec] = []
    content_ids: set[str] = set()
    for index, attachment in enumerate(attachments):
        item = check_attachment(f"attachments[{index}]", attachment)
        if item.content_id is not None:
            if item.content_id in content_ids:
                raise CompositionError(f"attachments[{index}].content_id", "is used twice")
            content_ids.add(item.content_id)
        checked.append(item)
    return tuple(checked)


def check_body(field: str, body: str | None) -> str | None:
    """A text or HTML body: NUL is not allowed in mail and lone surrogates cannot be
    encoded."""
    if body is None:
        return None
    if "\x00" in body:
        raise CompositionError(field, "must not contain NUL characters")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CompositionError(field, "is not valid Unicode text") from exc
    return body


def check_composition(
    composition: Composition, *, recipient_limit: int = MAX_RECIPIENTS
) -> Composition:
    """The whole composition checked, with every address and name normalized."""
    if composition.reply_to_original is not None and composition.forward_of is not None:
        raise CompositionError("forward_of", "a message is a reply or a forward, not both")
    to, cc, bcc = check_recipients(
        composition.to, composition.cc, composition.bcc, limit=recipient_limit
    )
    subject = composition.subject
    if subject is not None:
        check_header_value("subject", subject, max_chars=MAX_SUBJECT_CHARS)
    return dataclasses.replace(
        composition,
        from_=check_mailbox("from", composition.from_),
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=check_mailboxes("reply_to", composition.reply_to),
        text_body=check_body("text_body", composition.text_body),
        html_body=check_body("html_body", composition.html_body),
        attachments=check_attachments(composition.attachments),
        headers=check_custom_headers(composition.headers),
    )


def _shown(name: str) -> str:
    """A header name made safe to put into an error's field name."""
    return "".join(char if char.isprintable() else "?" for char in name[:MAX_HEADER_NAME_CHARS])
