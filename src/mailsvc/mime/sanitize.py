"""HTML bodies made safe to show, with nh3 (the ammonia sanitizer); never raises.

Kept: the markup mail uses for layout (tables, block and inline text elements,
lists, images, links, `font`, `center`) with presentational attributes and inline
styles filtered to a list of harmless CSS properties. Dropped with their content:
`script`, `style`, `title`, `template`, `noscript`, `iframe`, `object`, `embed`,
`form` controls, `svg` and `math`. Dropped attributes: every event handler and
anything not listed. Links keep http, https and mailto URLs only and open in a new
context without referrer or opener. Remote images (`http(s)://`: tracking pixels,
"was this mail read" beacons) are removed unless the caller allows remote content,
and `remote_content_blocked` says so; `cid:` images are pointed at the URL the
caller gives for that content-id, or removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nh3

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small",
    "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "tt", "u", "ul",
}  # fmt: skip
_DROPPED_WITH_CONTENT = {
    "script", "style", "title", "template", "noscript", "iframe", "object", "embed",
    "svg", "math", "select", "textarea", "button",
}  # fmt: skip
_CELL = {"align", "valign", "width", "height", "bgcolor", "colspan", "rowspan", "nowrap"}
_ATTRIBUTES = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "border"},
    "font": {"color", "face", "size"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor", "height"},
    "td": _CELL,
    "th": _CELL,
    "tr": {"valign", "bgcolor", "height"},
    "col": {"width", "span"},
    "colgroup": {"width", "span"},
    "ol": {"start", "type"},
}
_STYLE_PROPERTIES = {
    "background-color", "border", "border-bottom", "border-collapse", "border-color",
    "border-left", "border-radius", "border-right", "border-spacing", "border-style",
    "border-top", "border-width", "color", "direction", "display", "font", "font-family",
    "font-size", "font-style", "font-weight", "height", "letter-spacing", "line-height",
    "list-style-type", "margin", "margin-bottom", "margin-left", "margin-right",
    "margin-top", "max-width", "min-width", "padding", "padding-bottom", "padding-left",
    "padding-right", "padding-top", "text-align", "text-decoration", "text-indent",
    "text-transform", "vertical-align", "white-space", "width", "word-break",
}  # fmt: skip
# `img src` needs cid: and http(s): through the scheme check; the attribute filter
# below decides what becomes of each.
_URL_SCHEMES = {"http", "https", "mailto", "cid"}


@dataclass(frozen=True, slots=True)
class SanitizedHtml:
    """Sanitized HTML and whether remote content was taken out of it."""

    html: str
    remote_content_blocked: bool


def sanitize_html(
    html: str, *, cid_url: Callable[[str], str | None], allow_remote: bool = False
) -> SanitizedHtml:
    """`html` safe to embed in a page (see the module docstring for the policy)."""
    blocked = False

    def rewrite(element: str, attribute: str, value: str) -> str | None:
        nonlocal blocked
        if element == "img" and attribute == "src":
            lowered = value.strip().lower()
            if lowered.startswith("cid:"):
                return cid_url(value.strip()[4:].strip("<>"))
            if lowered.startswith(("http:", "https:", "//")):
                if allow_remote:
                    return value
                blocked = True
                return None
            return None
        if element == "a" and attribute == "href" and value.strip().lower().startswith("cid:"):
            return None
        return value

    try:
        cleaned = nh3.clean(
            html.replace("\x00", ""),
            tags=_TAGS,
            clean_content_tags=_DROPPED_WITH_CONTENT,
            attributes=_ATTRIBUTES,
            attribute_filter=rewrite,
            url_schemes=_URL_SCHEMES,
            link_rel="noopener noreferrer nofollow",
            set_tag_attribute_values={"a": {"target": "_blank"}},
            filter_style_properties=_STYLE_PROPERTIES,
            strip_comments=True,
        )
    except Exception:  # hostile input must never fail a read
        return SanitizedHtml(html="", remote_content_blocked=False)
    return SanitizedHtml(html=cleaned, remote_content_blocked=blocked)
