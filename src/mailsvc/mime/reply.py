"""The new text of a reply, without the quoted history and the signature.

mail-parser-reply recognises the quote headers of many mail clients and languages
("On ... wrote:", "Am ... schrieb ...:", Outlook's "-----Original Message-----" and
From/Sent blocks, `>` quoting) and signatures ("-- ", "Sent from my iPhone").
"""

from __future__ import annotations

from mailparser_reply import EmailReplyParser

_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh"]


def reply_text(text_body: str | None) -> str | None:
    """The reply's own text; the whole body when no quote is found; None when empty."""
    if not text_body or not text_body.strip():
        return None
    try:
        parsed = EmailReplyParser(languages=_LANGUAGES).parse_reply(text=text_body)
    except Exception:  # a library failure must not fail a read
        return text_body.strip()
    return (parsed or "").strip() or text_body.strip()
