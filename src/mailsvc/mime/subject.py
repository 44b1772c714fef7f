"""The subject key used to group messages into threads when ids are missing."""

from __future__ import annotations

import re

# Reply and forward markers of the common mail clients in many languages, with an
# optional counter ("Re[2]:", "Re(3):", "RE^2:"); U+FF1A is the full-width colon of CJK.
_MARKERS = (
    r"re|fwd?|aw|wg|sv|vs|antw|r[ée]f|tr|rif|enc|res|odp|vl|fs|atb|yml|"
    r"回复|回覆|答复|转发|轉寄|转寄|转|返信|転送|답장|전달"
)
# All prefixes in one match: stripping them one by one would be quadratic on a
# hostile "Re: Re: Re: ..." subject.
_PREFIXES = re.compile(
    rf"^(?:\s*(?:(?:{_MARKERS})\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:\uff1a]|\[[^\]]{{0,100}}\]))+\s*",
    re.IGNORECASE,
)
_SUFFIXES = re.compile(r"(?:\s*\((?:fwd|fw)\))+\s*$", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def normalize_subject(subject: str | None) -> str:
    """The subject without reply/forward prefixes and list tags, for threading.

    Strips any number of leading `Re:`, `Fwd:`, `Fw:`, `AW:`, `WG:`, `SV:`, `VS:`,
    `Antw:`, `Réf:`, `TR:`, `回复:`, `转发:` (and similar, with counters like
    `Re[2]:`) and `[list-tag]` prefixes, in any order and case, and a trailing
    `(fwd)`; then collapses whitespace and casefolds. A subject that is nothing but
    prefixes normalizes to "".
    """
    if not subject:
        return ""
    text = _WHITESPACE.sub(" ", subject).strip()
    while True:
        stripped = _SUFFIXES.sub("", _PREFIXES.sub("", text, count=1), count=1)
        if stripped == text:
            return text.casefold()
        text = stripped
