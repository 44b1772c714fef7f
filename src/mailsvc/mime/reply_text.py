"""The new text of a plain-text reply, without the quoted history or the signature.

mail-parser-reply (the only importer of `mailparser_reply`) finds where the quoted
history starts: "On ... wrote:" and its translations ("Am ... schrieb ...:", "Le
... a écrit :"), Outlook's "-----Original Message-----" and From/Sent/To blocks,
and where the signature starts: the "-- " delimiter, "Sent from my iPhone" and
its translations, sign-offs such as "Best regards,". This module adds what the
library leaves out:

- a bottom quote with no header (`> ...` lines ending the message) is dropped too;
- lines keep their indentation (the library strips every line);
- a sign-off phrase that opens a sentence ("Thanks, that works for me.") does not
  cut the message there: a sign-off line ending in `.`, `!` or `?` with more than
  three words is content, and then only an RFC 3676 "-- " delimiter ends it;
- the library's regular expressions are quadratic on long lines, runs of blank
  lines and runs of spaces, so it reads a probe: lines stripped, runs of spaces
  shortened to one, each line cut at `_PROBE_LINE_CHARS`, at most two blank lines
  in a row, `_PROBE_CHARS` in all. The reply is mapped back to the original lines;
  a probe that found no quote within its budget gives the whole message;
- nothing raises: on any failure of the library the stripped input comes back.

A message with nothing but a quote or a signature is returned whole, stripped:
there is no new text to prefer over it.

`DEFAULT_LANGUAGES` are the library's languages whose patterns do not cut English
text: Danish and Swedish sign-offs ("Tak", "/Name") match the start of ordinary
lines ("Take care", "/home"), and a single Polish header line ("Data: ...",
"Do: ...") ends the reply. Pass them explicitly for mailboxes in those languages.
The library has no Russian.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailparser_reply import EmailMessage

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "cs", "ja", "ko", "zh")

_PROBE_CHARS = 64_000
_PROBE_LINE_CHARS = 500
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SPACE_RUN = re.compile(r"\s+")
_SENTENCE_END = (".", "!", "?")
_SIGN_OFF_MAX_WORDS = 3
# RFC 3676 4.3: "-- " alone on a line; the probe has stripped its space.
_SIGNATURE_DELIMITER = "--"


def reply_text(
    text_body: str | None, *, languages: Sequence[str] = DEFAULT_LANGUAGES
) -> str | None:
    """The text the sender wrote in this message: the body without the quoted history
    and the signature; the whole body, stripped, when there is nothing else; None
    for a missing or blank body. Never raises."""
    if text_body is None or not text_body.strip():
        return None
    lines = _LINE_BREAK.split(text_body)
    try:
        kept = _reply_lines(lines, languages)
    except Exception:  # regular expressions run on hostile text; the body must still show
        return text_body.strip()
    reply = "\n".join(line.rstrip() for line in _without_bottom_quote(kept)).strip("\n")
    return reply if reply.strip() else text_body.strip()


def _reply_lines(lines: list[str], languages: Sequence[str]) -> list[str]:
    probe, origins, complete = _probe(lines)
    message = EmailMessage(
        text="\n".join(probe),
        languages=[language.lower() for language in languages],
        keep_hyphen_lists=True,
    ).read()
    if not message.replies:
        return lines
    reply = message.replies[0]
    body: str = (
        reply.body if _is_signature(reply.signatures) else _cut_at_delimiter(reply.full_body)
    )
    body_lines = body.split("\n")
    if not body.strip():
        return lines
    try:
        first = probe.index(body_lines[0])
    except ValueError:
        return body_lines
    last = first + len(body_lines) - 1
    if probe[first : last + 1] != body_lines:
        # The library cut inside a line (a disclaimer) or dropped a separator line;
        # its own stripped text is the best answer then.
        return body_lines
    if last == len(probe) - 1 and not complete:
        return lines[origins[first] :]
    return lines[origins[first] : origins[last] + 1]


def _probe(lines: list[str]) -> tuple[list[str], list[int], bool]:
    """The lines the library reads, the index of each in `lines`, and whether they
    cover the whole message."""
    probe: list[str] = []
    origins: list[int] = []
    budget = _PROBE_CHARS
    blank_run = 0
    for index, line in enumerate(lines):
        if budget <= 0:
            return probe, origins, False
        shown = _SPACE_RUN.sub(" ", line[: _PROBE_LINE_CHARS * 4].strip())
        # The library strips every line; a cut line must already be stripped to match.
        shown = shown[:_PROBE_LINE_CHARS].rstrip()
        blank_run = blank_run + 1 if not shown else 0
        if blank_run > 2:
            continue
        probe.append(shown)
        origins.append(index)
        budget -= len(shown) + 1
    return probe, origins, True


def _is_signature(signature: str) -> bool:
    first_line = signature.split("\n", 1)[0].strip()
    return not (
        first_line.endswith(_SENTENCE_END) and len(first_line.split()) > _SIGN_OFF_MAX_WORDS
    )


def _cut_at_delimiter(text: str) -> str:
    lines = text.split("\n")
    if _SIGNATURE_DELIMITER in lines:
        lines = lines[: lines.index(_SIGNATURE_DELIMITER)]
    return "\n".join(lines).strip()


def _without_bottom_quote(lines: list[str]) -> list[str]:
    """`lines` without the `>`-quoted lines and blank lines that end them, unless
    nothing else is left."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    return lines[:end] if end else lines
