"""HTML bodies made safe to show inside our own pages.

A message's HTML is written by whoever sent it, so it is treated as hostile: nh3
(the binding to the Rust sanitizer ammonia) parses it the way a browser does, with
html5ever, and rebuilds it from an allow-list. Anything not named here is removed.

Kept, because mail lays itself out with it:

- tables (`table`, `caption`, `colgroup`, `col`, `thead`, `tbody`, `tfoot`, `tr`,
  `td`, `th`) with `colspan`, `rowspan`, `align`, `valign`, `width`, `height`,
  `bgcolor`, `border`, `cellpadding`, `cellspacing`;
- blocks (`div`, `p`, `br`, `hr`, `h1`-`h6`, lists, `blockquote`, `pre`, `center`)
  and inline formatting (`span`, `b`, `i`, `u`, `s`, `strong`, `em`, `sub`, `sup`,
  `code`, `font` with `color`, `face` and `size`, ...);
- `title`, `dir`, `lang`, `align` and `style` on any of them. Inline styles keep
  only the properties of `_STYLE_PROPERTIES` (colours, fonts, text alignment and
  decoration, margins, padding, borders, sizes, `display`, `float`), and a
  declaration is dropped when it calls a CSS function other than `rgb()`, `rgba()`,
  `hsl()`, `hsla()` or `calc()`, or holds a backslash: `url()`, `image-set()` and
  their kin load from the network, and CSS escapes spell `url(` without its letters.

Removed:

- `<script>`, `<style>`, `<title>`, `<noscript>`, `<template>`, `<textarea>`,
  `<iframe>`, `<object>`, `<svg>`, `<math>` and the like, with their content.
  `<style>` blocks could only be made safe by rewriting every selector to stay
  inside the message, and mail carries most of its layout inline anyway;
- every other element (`<form>`, `<input>`, `<button>`, `<meta>`, `<base>`,
  `<link>`, `<embed>`, `<body>`, ...), its text kept;
- event handlers and every attribute not listed, `id`, `name` and `class`
  included: ids and names can clobber globals of the page around the message, and
  classes can borrow that page's CSS;
- comments, Outlook's conditional ones with them.

Links keep `href` only for http, https and mailto URLs, and all get
`target="_blank"` and `rel="noopener noreferrer nofollow"`. URLs are read as a
browser reads them (control characters and spaces around them dropped, tabs and
newlines dropped anywhere), so `java&#x09;script:` is the `javascript:` it is.
Relative URLs are removed (they would resolve against our own site), except the
ones `cid_url` returned.

`<img src>` is one of:

- `cid:` (an inline part of the message): replaced by `cid_url(content_id)`, the
  attachment download URL the caller builds, or removed when that returns None;
- `data:image/png`, `gif`, `jpeg`, `webp` or `bmp`: kept, since the bytes travel
  inside the message, loading them tells the sender nothing, and an image runs no
  script. `data:image/svg+xml` is not in the list, nor `data:` anywhere else;
- http, https or scheme-relative `//host/...`: remote. Loading it tells the sender
  that, when and from where the message was read (tracking pixels), so it is
  removed and `remote_content_blocked` set, unless `allow_remote=True`;
- anything else: removed.

`remote_content_blocked` answers one question for the reader: would
`allow_remote=True` show more? CSS `url()`s go either way and do not set it.

The result still belongs in a container that clips (a sandboxed iframe, or
`overflow: hidden` with `contain: paint`): sizes and margins are kept for layout,
and a negative margin moves content over whatever sits around the message.

Cost: html5ever is quadratic in a few places that hostile mail can reach: start
tags that scan the whole stack of open elements (100,000 nested `<div>`s take most
of a minute), each new formatting element compared with all those open, and each
`&` of a text node or attribute value copying what came before it. HTML of at most
`_DIRECT_MAX_CHARS` characters and `_DIRECT_MAX_TAGS` start tags cannot add up to
much, and goes to nh3 as written. Anything larger is first rewritten by
`_bound_nesting`, a forward-only tokenizer that keeps the allowed elements and the
text, well nested and at most `_MAX_DEPTH` deep, so that nh3's work stays linear;
its limits are named after what they bound. Input past `MAX_HTML_CHARS` is cut off.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from urllib.parse import unquote

import nh3

from mailsvc.mime.text import html_to_text

MAX_HTML_CHARS = 4_000_000

_MAX_DEPTH = 256
_MAX_ATTRIBUTES = 64
_MAX_OPEN_FORMATTING = 32
_MAX_AMPERSANDS_PER_VALUE = 100
_MAX_TEXT_RUN = 4_096
_DIRECT_MAX_TAGS = 2_000
_DIRECT_MAX_CHARS = 100_000

_TABLE_CELL_ATTRIBUTES = frozenset(
    {"colspan", "rowspan", "align", "valign", "width", "height", "bgcolor", "nowrap"}
)
_TABLE_ROW_ATTRIBUTES = frozenset({"valign", "bgcolor", "height"})
_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"style", "title", "dir", "lang", "align"}),
    "table": frozenset({"width", "height", "border", "cellpadding", "cellspacing", "bgcolor"}),
    "colgroup": frozenset({"span", "width", "valign"}),
    "col": frozenset({"span", "width", "valign"}),
    "thead": _TABLE_ROW_ATTRIBUTES,
    "tbody": _TABLE_ROW_ATTRIBUTES,
    "tfoot": _TABLE_ROW_ATTRIBUTES,
    "tr": _TABLE_ROW_ATTRIBUTES,
    "td": _TABLE_CELL_ATTRIBUTES,
    "th": _TABLE_CELL_ATTRIBUTES,
    "a": frozenset({"href"}),
    "img": frozenset({"src", "alt", "width", "height", "border", "hspace", "vspace"}),
    "font": frozenset({"color", "face", "size"}),
    "hr": frozenset({"width", "size", "noshade", "color"}),
    "ol": frozenset({"start", "type", "reversed"}),
    "ul": frozenset({"type"}),
    "li": frozenset({"value", "type"}),
}
_VOID_TAGS = frozenset({"br", "hr", "img", "col", "wbr"})
_TAGS = frozenset(_ATTRIBUTES.keys() - {"*"}) | _VOID_TAGS | frozenset(
    {
        "caption", "div", "p", "h1", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd",
        "blockquote", "pre", "center", "address", "span", "b", "i", "u", "s", "strike",
        "strong", "em", "sub", "sup", "small", "big", "code", "tt", "kbd", "samp", "var",
        "cite", "q", "abbr", "mark", "del", "ins", "nobr",
    }
)  # fmt: skip
# html5ever reads the content of these as text up to their end tag.
_RAW_TEXT_TAGS = frozenset(
    {"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "noscript"}
)
_DROPPED_WITH_CONTENT = _RAW_TEXT_TAGS | frozenset(
    {"template", "object", "applet", "svg", "math", "frameset"}
)
_STYLE_PROPERTIES = frozenset(
    {
        "color", "background", "background-color", "opacity",
        "font", "font-family", "font-size", "font-style", "font-variant", "font-weight",
        "line-height", "letter-spacing", "word-spacing", "white-space", "word-break",
        "word-wrap", "overflow-wrap", "text-align", "text-decoration", "text-indent",
        "text-transform", "vertical-align", "direction",
        "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
        "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
        "border", "border-color", "border-style", "border-width", "border-radius",
        "border-collapse", "border-spacing",
        *(
            f"border-{side}{part}"
            for side in ("top", "right", "bottom", "left")
            for part in ("", "-color", "-style", "-width")
        ),
        "width", "height", "min-width", "max-width", "min-height", "max-height",
        "display", "float", "clear", "overflow", "list-style-type", "table-layout",
        "caption-side", "empty-cells",
    }
)  # fmt: skip
_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc"})
_CSS_FUNCTION_CALL = re.compile(r"([-\w]*)\(")

_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_REMOTE_SCHEMES = frozenset({"http", "https"})
# nh3 drops a URL whose scheme is not listed before our filter sees it; the filter
# then decides per element which of these a URL may use.
_URL_SCHEMES = _LINK_SCHEMES | {"cid", "data"}
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpe?g|webp|bmp)[;,]", re.IGNORECASE)
# Browsers read a backslash as a slash in http(s) URLs, so all of these name a host.
_SCHEME_RELATIVE = frozenset({"//", "\\\\", "/\\", "\\/"})
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):")
# Browsers drop these around a URL, and tabs and newlines inside it.
_URL_EDGES = "".join(chr(code) for code in range(0x21))
_URL_INNER_BLANKS = str.maketrans("", "", "\t\n\r")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

_START_TAG = re.compile(r"<[a-zA-Z]")
# A "<" followed by anything else is text to html5ever; group 1 names a start tag.
_MARKUP_START = re.compile(r"<(?:([a-zA-Z][^\s/>]*)|[!?/])")
_TAG_NAME = re.compile(r"[a-zA-Z][^\s/>]*")
# The rest of a tag, one attribute or its end at a time: group 1 is an attribute's
# name, 2-4 its value in double, single or no quotes, 5 the closing ">".
_TAG_PART = re.compile(
    r"""[\s/]*(?:([^\s/>][^\s/>=]*)(?:\s*=\s*(?:"([^"]*)(?:"|\Z)|'([^']*)(?:'|\Z)|([^\s>]*)))?|(>))"""
)
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_.:-]*\Z")
_COMMENT_END = re.compile(r"--!?>")
_RAW_TEXT_END = {
    name: re.compile(rf"</{name}(?=[\s/>])[^>]*(?:>|\Z)", re.IGNORECASE) for name in _RAW_TEXT_TAGS
}
# html5ever compares each new one with those open (the "Noah's Ark" clause): quadratic.
_FORMATTING_TAGS = frozenset(
    {"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt",
     "u"}
)  # fmt: skip
_BLOCK_TAGS = frozenset(
    {
        "div", "p", "ul", "ol", "dl", "table", "blockquote", "pre", "center", "address",
        "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    }
)  # fmt: skip
# Start tags that end an open element of the listed kinds, as html5ever ends them,
# so that unclosed <p>, <li> and <td> do not pile up towards `_MAX_DEPTH`.
_IMPLIED_ENDS: dict[str, tuple[frozenset[str], ...]] = {
    **{name: (frozenset({"p"}),) for name in _BLOCK_TAGS},
    "li": (frozenset({"li"}),),
    "dt": (frozenset({"dt", "dd"}),),
    "dd": (frozenset({"dt", "dd"}),),
    "td": (frozenset({"td", "th"}),),
    "th": (frozenset({"td", "th"}),),
    "tr": (frozenset({"td", "th"}), frozenset({"tr"})),
    **{
        name: (frozenset({"td", "th"}), frozenset({"tr"}), frozenset({"thead", "tbody", "tfoot"}))
        for name in ("thead", "tbody", "tfoot")
    },
}


@dataclass(frozen=True, slots=True)
class SanitizedHtml:
    """An HTML body rebuilt from the allow-list of this module."""

    html: str
    """Safe to embed in a page (inside a clipping container, see the module docstring)."""
    remote_content_blocked: bool
    """Remote images were removed; `allow_remote=True` would show them."""
    content_ids: frozenset[str] = frozenset()
    """Content-ids referenced by `cid:` images, without `<>`, whether or not resolved."""


def sanitize_html(
    html: str, *, cid_url: Callable[[str], str | None], allow_remote: bool = False
) -> SanitizedHtml:
    """Make a message's HTML body safe to display, following the module's policy.

    `cid_url` maps a content-id (without `<>`) to the URL of that inline part, or
    None to drop the image; it must not raise (if it does, nh3 reports the error
    through `sys.unraisablehook` and the image loses its `src`). Never raises.
    """
    markup = _LONE_SURROGATE.sub("\ufffd", html[:MAX_HTML_CHARS])
    if len(markup) > _DIRECT_MAX_CHARS or _count_start_tags(markup) > _DIRECT_MAX_TAGS:
        markup = _bound_nesting(markup)
    policy = _UrlPolicy(cid_url=cid_url, allow_remote=allow_remote)
    cleaner = nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=policy.filter_attribute,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=_URL_SCHEMES,
        filter_style_properties=_STYLE_PROPERTIES,
        url_relative=policy.allow_relative,
    )
    try:
        cleaned = cleaner.clean(markup)
    except Exception:  # none known; a message must stay readable whatever nh3 meets
        return SanitizedHtml(
            html=f"<pre>{escape(html_to_text(markup))}</pre>", remote_content_blocked=False
        )
    return SanitizedHtml(
        html=cleaned,
        remote_content_blocked=policy.remote_blocked,
        content_ids=frozenset(policy.content_ids),
    )


@dataclass(slots=True)
class _UrlPolicy:
    """Per-call state of nh3's callbacks: what was blocked, which URLs we issued."""

    cid_url: Callable[[str], str | None]
    allow_remote: bool
    remote_blocked: bool = False
    content_ids: set[str] = field(default_factory=set)
    issued_urls: set[str] = field(default_factory=set)

    def filter_attribute(self, tag: str, attribute: str, value: str) -> str | None:
        """nh3's `attribute_filter`: the value to keep, or None to drop the attribute."""
        if attribute == "style":
            return _filter_style(value)
        if tag == "a" and attribute == "href":
            url = _normalize_url(value)
            return url if _scheme(url) in _LINK_SCHEMES else None
        if tag == "img" and attribute == "src":
            return self._image_source(_normalize_url(value))
        return value

    def allow_relative(self, url: str) -> str | None:
        """nh3's `url_relative`: only the attachment URLs built by `cid_url` pass."""
        return url if url in self.issued_urls else None

    def _image_source(self, url: str) -> str | None:
        scheme = _scheme(url)
        if scheme == "cid":
            return self._inline_part(url[len("cid:") :])
        if scheme in _REMOTE_SCHEMES or (scheme is None and url[:2] in _SCHEME_RELATIVE):
            if not self.allow_remote:
                self.remote_blocked = True
                return None
            return url if scheme else "https:" + url
        if scheme == "data" and _DATA_IMAGE.match(url):
            return url
        return None

    def _inline_part(self, reference: str) -> str | None:
        # RFC 2392: a cid URL is the percent-encoded Content-ID without its brackets,
        # though some senders keep them.
        content_id = unquote(reference).strip()
        if content_id.startswith("<") and content_id.endswith(">"):
            content_id = content_id[1:-1].strip()
        if not content_id:
            return None
        self.content_ids.add(content_id)
        target = self.cid_url(content_id)
        if target is not None:
            self.issued_urls.add(target)
        return target


def _normalize_url(value: str) -> str:
    return value.strip(_URL_EDGES).translate(_URL_INNER_BLANKS)


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _filter_style(value: str) -> str | None:
    kept = [
        declaration
        for declaration in value.split(";")
        if "\\" not in declaration
        and all(name in _CSS_FUNCTIONS for name in _CSS_FUNCTION_CALL.findall(declaration.lower()))
    ]
    return ";".join(kept) if kept else None


def _count_start_tags(markup: str) -> int:
    # Every element html5ever builds from the text starts with "<" and a letter, so
    # this bounds the depth and the number of elements from above.
    return sum(1 for _ in _START_TAG.finditer(markup))


def _bound_nesting(markup: str) -> str:
    """The allowed elements and the text of `markup`, re-serialized well nested at most
    `_MAX_DEPTH` deep, so that html5ever's work on the result is linear.

    Every `<` that would start markup is consumed with what it starts (text keeps
    only the `<`s that html5ever reads as text too), and each emitted end tag closes
    the element opened last, so html5ever builds the tree as counted here, however
    its reading of the original would have differed. Elements past the limits lose
    their tags and keep their text. Every search moves forward only.
    """
    tree = _BoundedTree()
    position = 0
    length = len(markup)
    while 0 <= position < length:
        found = _MARKUP_START.search(markup, position)
        if found is None:
            tree.text(markup[position:])
            break
        tree.text(markup[position : found.start()])
        position = found.start() + 1
        if (start_tag := found.group(1)) is not None:
            position, attributes = _read_attributes(markup, found.end())
            name = start_tag.lower()
            if position < 0:
                break
            if name in _RAW_TEXT_TAGS:
                raw_text_end = _RAW_TEXT_END[name].search(markup, position)
                position = raw_text_end.end() if raw_text_end else length
            elif name == "plaintext":
                tree.out.append(markup[position:].replace("<", "&lt;"))
                break
            elif name in _TAGS or name in _DROPPED_WITH_CONTENT:
                # The latter only for nh3 to drop them with what they hold.
                tree.start(name, attributes)
        elif markup.startswith("!--", position):
            position = _comment_end(markup, position + 3)
        elif (end_tag := _TAG_NAME.match(markup, position + 1)) is not None:
            position, _ = _read_attributes(markup, end_tag.end())
            if position >= 0:
                tree.end(end_tag.group().lower())
        else:  # "<!", "<?" and "</" without a name start comments that end at ">"
            end = markup.find(">", position)
            position = end + 1 if end >= 0 else length
    return "".join(tree.out)


class _BoundedTree:
    """Markup written by `_bound_nesting`, and the elements it left open."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._open: list[str] = []
        self._open_counts: Counter[str] = Counter()
        self._open_formatting = 0

    def text(self, text: str) -> None:
        # html5ever copies a text node's content so far at each "&" in it: an empty
        # comment before an "&" every few kilobytes starts a new node, and nh3 drops
        # the comment, so the output is the same text.
        start = 0
        while (cut := text.find("&", start + _MAX_TEXT_RUN)) >= 0:
            self.out.extend((text[start:cut], "<!---->"))
            start = cut
        self.out.append(text[start:])

    def start(self, name: str, attributes: dict[str, str]) -> None:
        for ended in _IMPLIED_ENDS.get(name, ()):
            if self._open and self._open[-1] in ended:
                self._close_top()
        if name not in _VOID_TAGS:
            if len(self._open) >= _MAX_DEPTH or (
                name in _FORMATTING_TAGS and self._open_formatting >= _MAX_OPEN_FORMATTING
            ):
                return
            self._open.append(name)
            self._open_counts[name] += 1
            self._open_formatting += name in _FORMATTING_TAGS
        # Values keep their character references: html5ever decodes them the same
        # way between the double quotes written here as in the original.
        serialized = "".join(
            f' {attribute}="{value.replace(chr(34), "&quot;")}"'
            for attribute, value in attributes.items()
        )
        self.out.append(f"<{name}{serialized}>")

    def end(self, name: str) -> None:
        if self._open_counts[name] > 0:
            while self._open[-1] != name:
                self._close_top()
            self._close_top()

    def _close_top(self) -> None:
        name = self._open.pop()
        self._open_counts[name] -= 1
        self._open_formatting -= name in _FORMATTING_TAGS
        self.out.append(f"</{name}>")


def _read_attributes(markup: str, position: int) -> tuple[int, dict[str, str]]:
    """Attributes of the tag whose name ends at `position`, and where the tag ends;
    -1 when the document ends inside the tag, which html5ever then drops."""
    attributes: dict[str, str] = {}
    while (part := _TAG_PART.match(markup, position)) is not None and part.group(1):
        position = part.end()
        name = part.group(1).lower()
        value = next((text for text in part.group(2, 3, 4) if text is not None), "")
        # The first of a repeated attribute wins, as in html5ever. Each "&" costs
        # html5ever a copy of the value so far, and no URL needs a hundred.
        if (
            len(attributes) < _MAX_ATTRIBUTES
            and name not in attributes
            and _ATTRIBUTE_NAME.match(name)
            and value.count("&") <= _MAX_AMPERSANDS_PER_VALUE
        ):
            attributes[name] = value
    return (part.end() if part is not None else -1), attributes


def _comment_end(markup: str, position: int) -> int:
    # "<!-->" and "<!--->" are whole comments; otherwise the first "-->" or "--!>".
    if markup.startswith(">", position):
        return position + 1
    if markup.startswith("->", position):
        return position + 2
    end = _COMMENT_END.search(markup, position)
    return end.end() if end else len(markup)
