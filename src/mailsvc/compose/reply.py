"""What a reply or a forward takes from the original: subject, threading, quoted text.

Subjects: a reply gets "Re: " and a forward "Fwd: ", unless the subject already
starts with a marker of the same kind, in any of the languages that mail clients
write ("AW:", "SV:", "回复:" for replies; "WG:", "TR:", "转发:" for forwards), possibly
after a `[list-tag]`. `mailsvc.mime.subject` knows the same markers but strips them
all to build a threading key; here a reply to "Fwd: x" must become "Re: Fwd: x",
so replies and forwards are told apart.

Threading (RFC 5322 3.6.4): In-Reply-To is the original's Message-ID, References
its References followed by its Message-ID, cut like `mailsvc.mime.assemble` cuts
them: the thread's root and the nearest ancestors are kept.

Everything taken from the original is stored mail, i.e. hostile text: ids that are
not plain printable ASCII are dropped, control characters in a subject become
spaces, and quoted text loses NUL and unencodable characters. A bad original never
makes a reply fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from email.utils import format_datetime
from html import escape

from mailsvc.compose.model import Mailbox, OriginalMessage
from mailsvc.compose.validate import ID_TEXT, MAX_MESSAGE_ID_CHARS, MAX_SUBJECT_CHARS

MAX_REFERENCES = 21
"""The thread's root and the 20 nearest ancestors, as common mail clients keep them."""
FORWARD_SEPARATOR = "---------- Forwarded message ---------"

_REPLY_MARKERS = r"re|aw|sv|vs|antw|odp|res|rif|atb|ynt|回复|回覆|答复|返信|답장"
_FORWARD_MARKERS = r"fwd?|wg|tr|rv|enc|vl|vb|doorst|转发|轉寄|转寄|転送|전달"


def _marker_prefix(markers: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\s*(?:\[[^\]]{{0,100}}\]\s*)?(?:{markers})\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:\uff1a]",
        re.IGNORECASE,
    )


_REPLY_PREFIX = _marker_prefix(_REPLY_MARKERS)
_FORWARD_PREFIX = _marker_prefix(_FORWARD_MARKERS)
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NEWLINES = "\r\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_QUOTE_STYLE = "margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex"
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029/\\:*?"<>|]+')
_MAX_FILENAME_STEM = 100


def reply_subject(subject: str | None) -> str:
    """`subject` with "Re: " in front, unless it already starts with a reply marker."""
    text = _clean_subject(subject)
    return text if _REPLY_PREFIX.match(text) else f"Re: {text}".rstrip()


def forward_subject(subject: str | None) -> str:
    """`subject` with "Fwd: " in front, unless it already starts with a forward marker."""
    text = _clean_subject(subject)
    return text if _FORWARD_PREFIX.match(text) else f"Fwd: {text}".rstrip()


def thread_headers(original: OriginalMessage) -> tuple[str | None, tuple[str, ...]]:
    """In-Reply-To and References of a reply to `original`, ids in `<...>` form."""
    parent = next(iter(message_ids([original.message_id or ""])), None)
    references = [item for item in message_ids(original.references) if item != parent]
    if parent is not None:
        references.append(parent)
    if len(references) > MAX_REFERENCES:
        references = [references[0], *references[-(MAX_REFERENCES - 1) :]]
    return (
        f"<{parent}>" if parent is not None else None,
        tuple(f"<{item}>" for item in references),
    )


def message_ids(values: Iterable[str]) -> list[str]:
    """The usable ids in `values`, without brackets, each once, in order.

    A value may hold several `<id>`s or one bare id. Ids that are not printable
    ASCII without spaces, or are absurdly long, are dropped: they could not be
    written into a header safely.
    """
    seen: set[str] = set()
    ids: list[str] = []
    for value in values:
        found = _BRACKETED_ID.findall(value) if "<" in value else [value.strip()]
        for item in found:
            if ID_TEXT.fullmatch(item) and len(item) <= MAX_MESSAGE_ID_CHARS and item not in seen:
                seen.add(item)
                ids.append(item)
    return ids


def quote_text(body: str | None, original: OriginalMessage) -> str | None:
    """`body` followed by "On <date>, <sender> wrote:" and the original text quoted
    with "> "; `body` unchanged if the original has no text."""
    if not original.text_body or not original.text_body.strip():
        return body
    quoted = "\n".join(_quote_line(line) for line in _lines(original.text_body))
    return _join_text(body, f"{_attribution(original)}\n{quoted}\n")


def quote_html(body: str | None, original: OriginalMessage) -> str | None:
    """`body` with the attribution and a `<blockquote type="cite">` of the original
    text at the end of its `<body>`; None stays None, as does an original without
    text."""
    if body is None or not original.text_body or not original.text_body.strip():
        return body
    quoted = "<br>\n".join(escape(line) for line in _lines(original.text_body))
    block = (
        f'<div class="mailsvc_quote"><div>{escape(_attribution(original))}</div>\n'
        f'<blockquote type="cite" style="{_QUOTE_STYLE}">\n{quoted}\n</blockquote></div>'
    )
    return _append_html(body, block)


def forward_text(body: str | None, original: OriginalMessage) -> str:
    """`body` followed by the forwarded-message block: the original's From, Date,
    Subject and To, a blank line and its text."""
    block = "\n".join([FORWARD_SEPARATOR, *_forward_fields(original)])
    text = "\n".join(_lines(original.text_body or ""))
    return _join_text(body, f"{block}\n\n{text}\n" if text.strip() else f"{block}\n")


def forward_html(body: str | None, original: OriginalMessage) -> str | None:
    """`body` with the forwarded-message block appended; None stays None."""
    if body is None:
        return None
    fields = "<br>\n".join(escape(line) for line in _forward_fields(original))
    text = "<br>\n".join(escape(line) for line in _lines(original.text_body or ""))
    block = (
        f'<div class="mailsvc_forward">{escape(FORWARD_SEPARATOR)}<br>\n{fields}<br>\n'
        f"<br>\n{text}</div>"
    )
    return _append_html(body, block)


def forwarded_filename(original: OriginalMessage) -> str:
    """A file name for the original attached as message/rfc822: its subject + ".eml"."""
    stem = _UNSAFE_FILENAME.sub(" ", _clean_subject(original.subject))
    stem = " ".join(stem.split())[:_MAX_FILENAME_STEM].strip(" .")
    return f"{stem or 'forwarded message'}.eml"


def _clean_subject(subject: str | None) -> str:
    return _safe(subject or "")[:MAX_SUBJECT_CHARS]


def _attribution(original: OriginalMessage) -> str:
    sender = _mailboxes(original.from_)
    if original.date is None:
        return f"{sender or 'The sender'} wrote:"
    return f"On {_date(original.date)}, {sender or 'the sender'} wrote:"


def _forward_fields(original: OriginalMessage) -> list[str]:
    fields = [
        ("From", _mailboxes(original.from_)),
        ("Date", _date(original.date) if original.date is not None else ""),
        ("Subject", _clean_subject(original.subject)),
        ("To", _mailboxes(original.to)),
    ]
    return [f"{name}: {value}" for name, value in fields if value]


def _date(date: datetime) -> str:
    # The RFC 5322 form: unambiguous, and independent of the process locale.
    return format_datetime(date)


def _mailboxes(mailboxes: Sequence[Mailbox]) -> str:
    shown = (
        f"{_safe(mailbox.name)} <{_safe(mailbox.address)}>"
        if mailbox.name
        else _safe(mailbox.address)
        for mailbox in mailboxes
    )
    return ", ".join(shown)


def _safe(text: str) -> str:
    """Stored header text on one line: controls and runs of whitespace become one
    space, characters that cannot be encoded (lone surrogates) a "?"."""
    encodable = text.encode("utf-8", "replace").decode("utf-8")
    return " ".join(_CONTROL.sub(" ", encodable).split())


def _lines(text: str) -> list[str]:
    """The lines of stored text, without NUL, unencodable characters or trailing
    blank lines."""
    cleaned = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return _LINE_BREAK.split(cleaned.rstrip())


def _quote_line(line: str) -> str:
    # Already quoted lines get ">" alone, so that ">> " marks the second level.
    if not line:
        return ">"
    return f">{line}" if line.startswith(">") else f"> {line}"


def _join_text(body: str | None, block: str) -> str:
    if not body:
        return block
    return f"{body.rstrip(_NEWLINES)}\n\n{block}"


def _append_html(html: str, block: str) -> str:
    """`block` inserted before the last `</body>` of `html`, or appended."""
    ends = [match.start() for match in _BODY_END.finditer(html)]
    if not ends:
        return f"{html}\n{block}"
    return f"{html[: ends[-1]]}{block}\n{html[ends[-1] :]}"
