"""Plain text from HTML bodies, and the snippet shown in message lists.

`html_to_text` is a handful of linear regular-expression passes rather than an
`html.parser` walk: it runs for every HTML-only message of a sync, where an
HTML parser in pure Python costs several times more, and what the result feeds
(search, snippets, a text fallback) needs words and line breaks, not a DOM.
Every pattern is written so that no input makes it quadratic: the elements
whose content is dropped are skipped with forward-only searches, and tags are
only matched up to the last `>` of the document.
"""

from __future__ import annotations

import html
import re

# Elements whose content is not text a reader sees.
_HIDDEN = re.compile(r"<!--|<(script|style|head|title|template|noscript|xml)\b", re.IGNORECASE)
_HIDDEN_END = {
    name: re.compile(rf"</{name}\s*>" + (r"|<body\b" if name == "head" else ""), re.IGNORECASE)
    for name in ("script", "style", "head", "title", "template", "noscript", "xml")
}
_COMMENT_END = re.compile(r"-->")
_PRE = re.compile(r"<pre\b[^>]*>", re.IGNORECASE)
_PRE_END = re.compile(r"</pre\s*>", re.IGNORECASE)
_SPACE = re.compile(r"[ \t\r\n\f]+")
_LINE_BREAK = re.compile(r"<br\b[^>]*>", re.IGNORECASE)
_PARAGRAPH = re.compile(
    r"</?(?:p|h[1-6]|blockquote|table|ul|ol|dl|pre|hr|address|figure)\b[^>]*>", re.IGNORECASE
)
_BLOCK = re.compile(
    r"</?(?:div|tr|dt|dd|section|article|header|footer|center|form|fieldset|main|nav|aside"
    r"|details|summary|caption|thead|tbody|tfoot|figcaption)\b[^>]*>",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"<li\b[^>]*>", re.IGNORECASE)
_CELL_END = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>|<![^>]*>|<\?[^>]*>")
_AROUND_NEWLINE = re.compile(r"[ \t\xa0]*\n[ \t\xa0]*")
_BLANK_LINES = re.compile(r"\n{3,}")
_RUNS_OF_SPACE = re.compile(r"[ \t\xa0\u200b\u200c\u00ad]{2,}")


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: no tags, scripts or styles, entities decoded,
    paragraph and line breaks kept (`<p>` gives a blank line, `<br>` a newline)."""
    markup = _drop_hidden(markup)
    markup = _keep_preformatted_breaks(markup)
    markup = _SPACE.sub(" ", markup)
    last_tag_end = markup.rfind(">") + 1
    # Past the last ">" no tag can close; matching there could only scan to the end
    # again and again, so that tail is left as text.
    head, tail = markup[:last_tag_end], markup[last_tag_end:]
    head = _LINE_BREAK.sub("\n", head)
    head = _PARAGRAPH.sub("\n\n", head)
    head = _BLOCK.sub("\n", head)
    head = _LIST_ITEM.sub("\n- ", head)
    head = _CELL_END.sub(" ", head)
    head = _TAG.sub("", head)
    text = html.unescape(head + tail)
    text = _AROUND_NEWLINE.sub("\n", text)
    text = _RUNS_OF_SPACE.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip().replace("\xa0", " ")


def _drop_hidden(markup: str) -> str:
    pieces: list[str] = []
    position = 0
    while True:
        match = _HIDDEN.search(markup, position)
        if match is None:
            break
        pieces.append(markup[position : match.start()])
        name = match.group(1)
        end_pattern = _COMMENT_END if name is None else _HIDDEN_END[name.lower()]
        end = end_pattern.search(markup, match.end())
        if end is None:
            # Browsers drop an unclosed script, style or comment to the end of the
            # document; an unclosed <head> only hides itself.
            position = len(markup) if name is None or name.lower() != "head" else match.end()
            continue
        # "<body" ends a head without being consumed; closing tags are consumed.
        body_starts = end.group(0)[:5].lower() == "<body"
        position = end.start() if body_starts else end.end()
    pieces.append(markup[position:])
    return "".join(pieces)


def _keep_preformatted_breaks(markup: str) -> str:
    if "<pre" not in markup and "<PRE" not in markup:
        return markup
    pieces: list[str] = []
    position = 0
    while True:
        match = _PRE.search(markup, position)
        if match is None:
            break
        end = _PRE_END.search(markup, match.end())
        stop = len(markup) if end is None else end.start()
        pieces.append(markup[position : match.end()])
        pieces.append(markup[match.end() : stop].replace("\n", "<br>"))
        position = stop
    pieces.append(markup[position:])
    return "".join(pieces)


def make_snippet(text: str, limit: int = 200) -> str:
    """The first ~`limit` characters of `text` on one line, without quoted replies.

    Lines starting with ">" and the "On ... wrote:" line before them are skipped
    (unless nothing else is left); the cut falls on a word boundary when one is near.
    """
    # Only the start matters; bounding the input bounds the work on huge bodies.
    lines = [line.strip() for line in text[: limit * 20].split("\n")]
    # The next non-blank line after each line, in one backward pass.
    following = [""] * len(lines)
    upcoming = ""
    for index in range(len(lines) - 1, -1, -1):
        following[index] = upcoming
        if lines[index]:
            upcoming = lines[index]
    kept = [
        line
        for line, after in zip(lines, following, strict=True)
        # "On <date>, <name> wrote:" in whatever language: a line ending in a colon
        # right before the quote.
        if not line.startswith(">") and not (line.endswith(":") and after.startswith(">"))
    ]
    snippet = " ".join(" ".join(kept).split())
    if not snippet:
        snippet = " ".join(text[: limit * 20].split())
    if len(snippet) <= limit:
        return snippet
    cut = snippet.rfind(" ", limit - 30, limit)
    return snippet[: cut if cut > 0 else limit]


def safe_server_text(text: str | bytes, *, limit: int = 200) -> str:
    """A server's reply made fit for an error message: printable, one line, bounded.

    Server replies are hostile input: they may carry control characters or be huge.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
