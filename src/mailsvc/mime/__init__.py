"""Pure MIME layer: raw messages and IMAP BODYSTRUCTURE responses in, plain data out.

No I/O and no SQLAlchemy, aioimaplib or aiosmtplib here (STYLE.md rule 7): the sync
engine calls these from a process pool, so results are picklable dataclasses.

- `parse_message(raw)` parses a whole message (design notes in `mailsvc.mime.parse`).
- `parse_bodystructure(response)` reads an IMAP BODYSTRUCTURE; `text_sections`,
  `attachments_from_structure` and `parse_partial` build the same `ParsedMessage`
  from the header, the structure and the text parts of a message above the size cap.
- `normalize_subject(subject)` gives the subject key used for threading.

Neither parser raises: defects are described in `ParsedMessage.parse_errors`.
"""

from mailsvc.mime.bodystructure import (
    BodyPart,
    attachments_from_structure,
    parse_bodystructure,
    parse_partial,
    text_sections,
)
from mailsvc.mime.model import Address, MimePart, ParsedAttachment, ParsedMessage
from mailsvc.mime.parse import parse_message
from mailsvc.mime.subject import normalize_subject

__all__ = [
    "Address",
    "BodyPart",
    "MimePart",
    "ParsedAttachment",
    "ParsedMessage",
    "attachments_from_structure",
    "normalize_subject",
    "parse_bodystructure",
    "parse_message",
    "parse_partial",
    "text_sections",
]
