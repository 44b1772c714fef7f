"""HTML bodies made safe to display: hostile markup, remote content, inline parts."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from html.parser import HTMLParser

import pytest

from mailsvc.mime import sanitize
from mailsvc.mime.sanitize import SanitizedHtml, sanitize_html

PARTS = {"part1.abc@example.com": "/api/messages/7/attachments/3"}
# More start tags than go to nh3 unchanged, so a test run with it also covers the
# rewrite that bounds nesting.
PADDING = "<p>padding</p>" * 2_100


def _no_parts(content_id: str) -> str | None:
    return None


@pytest.fixture(params=["as written", "rewritten first"])
def clean(request: pytest.FixtureRequest) -> Callable[..., SanitizedHtml]:
    """`sanitize_html` on the markup alone, or after enough padding to be rewritten."""
    prefix = PADDING if request.param == "rewritten first" else ""

    def run(markup: str, *, allow_remote: bool = False) -> SanitizedHtml:
        result = sanitize_html(prefix + markup, cid_url=PARTS.get, allow_remote=allow_remote)
        padding_out = sanitize_html(prefix, cid_url=_no_parts).html
        assert result.html.startswith(padding_out)
        return SanitizedHtml(
            html=result.html[len(padding_out) :],
            remote_content_blocked=result.remote_content_blocked,
            content_ids=result.content_ids,
        )

    return run


def test_scripts_go_with_their_content(clean: Callable[..., SanitizedHtml]) -> None:
    result = clean("<p>Hi</p><script>alert(1)</script><SCRIPT SRC=//evil.example/x.js></SCRIPT>")
    assert result.html == "<p>Hi</p>"


@pytest.mark.parametrize(
    "markup",
    [
        "<img src=x onerror=alert(1)>",
        '<p onclick="alert(1)">text</p>',
        "<body onload=alert(1)>text",
        '<a href="https://example.com/" onmouseover="alert(1)">x</a>',
        "<svg onload=alert(1)><circle r=1 /></svg>",
        "<svg><script>alert(1)</script></svg>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
        '<img src="x` `<script>alert(1)</script>"` `>',
        "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
        '<div style="width: expression(alert(1))">x</div>',
    ],
)
def test_no_script_survives(clean: Callable[..., SanitizedHtml], markup: str) -> None:
    html = clean(markup).html.lower()
    assert "<script" not in html
    assert not re.search(r"\son\w+=", html)
    assert "expression" not in html


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "java&#x09;script:alert(1)",
        "java&#10;script:alert(1)",
        "&#106;avascript:alert(1)",
        "&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)",
        " \x01javascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "/relative/path",
        "//evil.example/",
        "cid:part1.abc@example.com",
    ],
)
def test_links_keep_only_web_and_mail_urls(clean: Callable[..., SanitizedHtml], href: str) -> None:
    html = clean(f'<a href="{href}">click</a>').html
    assert "href" not in html
    assert ">click</a>" in html


def test_links_open_in_a_new_context_without_referrer(
    clean: Callable[..., SanitizedHtml],
) -> None:
    html = clean('<a href="https://example.com/a?b=1&amp;c=2" target="_self">go</a>').html
    assert _normalized(html) == _normalized(
        '<a href="https://example.com/a?b=1&amp;c=2" target="_blank"'
        ' rel="noopener noreferrer nofollow">go</a>'
    )
    mail = clean('<a href="MAILTO:bob@example.com">Bob</a>').html
    assert 'href="MAILTO:bob@example.com"' in mail


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ('<iframe src="https://evil.example/"></iframe>after', "after"),
        ('<object data="https://evil.example/x.swf">fallback</object>after', "after"),
        ('<embed src="https://evil.example/x.swf">after', "after"),
        ('<form action="https://e.example/"><input name="pw"><button>Go</button></form>', "Go"),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example/">after', "after"),
        ('<base href="https://evil.example/">after', "after"),
        ('<link rel="stylesheet" href="https://evil.example/x.css">after', "after"),
        ("<style>body { display: none }</style>after", "after"),
        ("<title>Newsletter</title>after", "after"),
        ("<textarea>typed</textarea>after", "after"),
    ],
)  # fmt: skip
def test_active_and_page_level_elements_are_removed(
    clean: Callable[..., SanitizedHtml], markup: str, text: str
) -> None:
    assert clean(markup).html == text


def test_identifiers_and_classes_are_dropped(clean: Callable[..., SanitizedHtml]) -> None:
    html = clean('<div id="main" name="n" class="admin" data-x="1" title="t">x</div>').html
    assert html == '<div title="t">x</div>'


def test_comments_are_dropped(clean: Callable[..., SanitizedHtml]) -> None:
    html = clean("<!--[if mso]><p>Outlook only</p><![endif]--><p>All</p><!-- note -->")
    assert html.html == "<p>All</p>"


def test_layout_tables_fonts_and_inline_styles_survive(
    clean: Callable[..., SanitizedHtml],
) -> None:
    markup = (
        '<center><table width="600" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff"'
        ' align="center"><tbody><tr><td colspan="2" rowspan="1" valign="top" width="50%"'
        ' style="padding: 10px 20px; color: #333333; font-family: Arial, sans-serif;'
        ' border-bottom: 1px solid #eeeeee; text-align: left">'
        '<h1 style="font-size: 24px; margin: 0">Title</h1>'
        '<font color="#ff0000" face="Georgia" size="2">Red</font> <b>bold</b> <i>it</i>'
        " <u>under</u> <s>struck</s> H<sub>2</sub>O x<sup>2</sup><br>"
        '<ul><li>one</li></ul><ol start="3"><li>three</li></ol>'
        "<blockquote>quoted</blockquote><pre>  pre</pre><hr>"
        "</td></tr></tbody></table></center>"
    )
    html = clean(markup).html
    for kept in (
        "<center>",
        'width="600"',
        'cellpadding="0"',
        'bgcolor="#ffffff"',
        'align="center"',
        'colspan="2"',
        'valign="top"',
        "padding:10px 20px",
        "color:#333333",
        "border-bottom:1px solid #eeeeee",
        "text-align:left",
        '<font color="#ff0000" face="Georgia" size="2">Red</font>',
        "<b>bold</b>",
        "<sub>2</sub>",
        "<sup>2</sup>",
        '<ol start="3"><li>three</li></ol>',
        "<blockquote>quoted</blockquote>",
        "<pre>  pre</pre>",
        "<hr>",
        "<h1 ",
    ):
        assert kept in html, kept


def test_styles_lose_network_and_positioning_declarations(
    clean: Callable[..., SanitizedHtml],
) -> None:
    markup = (
        '<p style="color: red; position: fixed; top: 0; background: url(https://t.example/a.png);'
        " background-image: image-set('https://t.example/b.png' 1x);"
        " background: u\\72l(https://t.example/c.png); behavior: url(x.htc);"
        ' background-color: rgb(1, 2, 3)">x</p>'
    )
    result = clean(markup)
    assert result.html == '<p style="color:red;background-color:rgb(1, 2, 3)">x</p>'
    # Remote CSS is removed with or without permission, so it is not offered.
    assert result.remote_content_blocked is False


@pytest.mark.parametrize(
    "source",
    [
        "https://tracker.example/open.gif?u=42",
        "HTTP://tracker.example/open.gif",
        "//tracker.example/open.gif",
        "\\\\tracker.example/open.gif",
        " https://tracker.example/open.gif",
    ],
)
def test_remote_images_are_blocked_and_flagged(
    clean: Callable[..., SanitizedHtml], source: str
) -> None:
    result = clean(f'<p>Hi</p><img src="{source}" width="1" height="1" alt="">')
    assert "tracker" not in result.html
    assert _normalized(result.html) == _normalized('<p>Hi</p><img width="1" height="1" alt="">')
    assert result.remote_content_blocked is True


def test_remote_images_show_when_allowed(clean: Callable[..., SanitizedHtml]) -> None:
    markup = '<img src="https://cdn.example/logo.png"><img src="//cdn.example/hero.png">'
    result = clean(markup, allow_remote=True)
    assert result.html == (
        '<img src="https://cdn.example/logo.png"><img src="https://cdn.example/hero.png">'
    )
    assert result.remote_content_blocked is False


def test_mail_without_remote_content_is_not_flagged(clean: Callable[..., SanitizedHtml]) -> None:
    result = clean('<p>Hi <a href="https://example.com/">link</a></p><img src="cid:nope@x">')
    assert result.remote_content_blocked is False


@pytest.mark.parametrize(
    "source",
    [
        "cid:part1.abc@example.com",
        "CID:part1.abc@example.com",
        "cid:%3Cpart1.abc@example.com%3E",
        "cid:<part1.abc@example.com>",
        "cid:part1%2Eabc@example.com",
    ],
)
def test_inline_parts_point_at_the_attachment_url(
    clean: Callable[..., SanitizedHtml], source: str
) -> None:
    result = clean(f'<img src="{source}" alt="logo">')
    assert _normalized(result.html) == _normalized(
        '<img src="/api/messages/7/attachments/3" alt="logo">'
    )
    assert result.content_ids == {"part1.abc@example.com"}
    assert result.remote_content_blocked is False


def test_an_unknown_inline_part_loses_its_source(clean: Callable[..., SanitizedHtml]) -> None:
    result = clean('<img src="cid:missing@example.com" alt="gone">')
    assert result.html == '<img alt="gone">'
    assert result.content_ids == {"missing@example.com"}


def test_the_callback_gets_the_bare_content_id() -> None:
    asked: list[str] = []

    def cid_url(content_id: str) -> str | None:
        asked.append(content_id)
        return f"https://api.example/parts/{len(asked)}"

    result = sanitize_html('<img src="cid:%3Ca@b%3E"><img src="cid:">', cid_url=cid_url)
    assert asked == ["a@b"]
    assert result.html == '<img src="https://api.example/parts/1"><img>'


def test_a_relative_url_passes_only_when_the_callback_made_it() -> None:
    markup = '<img src="cid:part1.abc@example.com"><img src="/api/messages/7/attachments/3">'
    result = sanitize_html(markup, cid_url=PARTS.get)
    assert result.html == '<img src="/api/messages/7/attachments/3"><img>'


@pytest.mark.parametrize(
    ("source", "kept"),
    [
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("DATA:image/gif;base64,R0lGODlh", True),
        ("data:image/jpeg;base64,/9j/4AAQ", True),
        ("data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
    ],
)
def test_embedded_images_are_kept_only_as_raster_images(
    clean: Callable[..., SanitizedHtml], source: str, kept: bool
) -> None:
    result = clean(f'<img src="{source}">')
    assert (result.html == f'<img src="{source}">') is kept
    assert result.remote_content_blocked is False


def test_garbage_never_raises() -> None:
    generator = random.Random(20260301)
    for _ in range(20):
        raw = bytes(generator.randrange(256) for _ in range(5_000))
        sanitize_html(raw.decode("utf-8", errors="replace"), cid_url=_no_parts)
    symbols = ["<", ">", "/", "!", "-", "'", '"', "=", "&", "#", ";", "a", "b", "p", "div", " "]
    for _ in range(200):
        soup = "".join(generator.choice(symbols) for _ in range(300))
        result = sanitize_html(soup, cid_url=_no_parts)
        assert "<script" not in result.html
    lone_surrogate = sanitize_html("<p>\ud800x\udfff</p>", cid_url=_no_parts)
    assert lone_surrogate.html == "<p>\ufffdx\ufffd</p>"


def test_text_survives_ten_thousand_nested_divs() -> None:
    markup = "<div>" * 10_000 + "deep text" + "</div>" * 10_000
    start = time.perf_counter()
    result = sanitize_html(markup, cid_url=_no_parts)
    assert time.perf_counter() - start < 2.0
    assert "deep text" in result.html


@pytest.mark.parametrize(
    "markup",
    [
        "<div>" * 200_000,
        "<div><span>" * 100_000,
        "".join(f"<b class=c{i}>" for i in range(20_000)) + "<p>x" * 5_000,
        "".join(f"<font color=#{i:06x}>" for i in range(40)) + "<b class=y></b>" * 100_000,
        "<p " + " ".join(f"a{i}=1" for i in range(100_000)) + ">",
        "<p>" + "&amp; " * 400_000,
        '<p title="' + "&amp;" * 300_000 + '">x</p>',
        "<table><tr><td>" * 50_000,
        "<a" * 300_000,
        "<!--" * 300_000,
        "<script>" * 200_000,
        "<" * 1_000_000,
        "x" * 6_000_000,
    ],
    ids=lambda markup: repr(markup[:24]),
)
def test_hostile_markup_costs_about_linear_time(markup: str) -> None:
    start = time.perf_counter()
    sanitize_html(markup, cid_url=_no_parts)
    # Each of these took from several seconds to minutes before the rewrite.
    assert time.perf_counter() - start < 5.0


def test_a_large_well_formed_message_keeps_its_layout() -> None:
    row = (
        '<tr><td style="padding: 4px" valign="top"><a href="https://example.com/item?a=1&amp;b=2">'
        'Item</a> &amp; <img src="https://cdn.example/i.png" alt="i"></td></tr>'
    )
    small = f'<table width="600">{row * 10}</table><script>alert(1)</script>'
    large = f'<table width="600">{row * 5_000}</table><script>alert(1)</script>'
    small_result = sanitize_html(small, cid_url=_no_parts)
    large_result = sanitize_html(large, cid_url=_no_parts)
    assert len(large) > 500_000
    # The large one is rewritten before nh3 sees it, and comes out row for row the same.
    small_rows = small_result.html.split("<tr>")[1:]
    large_rows = large_result.html.split("<tr>")[1:]
    assert len(large_rows) == 5_000
    assert set(large_rows[:-1]) == {small_rows[0]}
    assert large_rows[-1] == small_rows[-1]
    assert large_result.remote_content_blocked is small_result.remote_content_blocked is True


def test_input_beyond_the_cap_is_cut() -> None:
    markup = "<p>" + "a" * sanitize.MAX_HTML_CHARS + "TAIL</p>"
    result = sanitize_html(markup, cid_url=_no_parts)
    assert "TAIL" not in result.html
    assert result.html.startswith("<p>aaa")


def test_a_sanitizer_failure_still_shows_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    class BrokenCleaner:
        def __init__(self, **options: object) -> None:
            pass

        def clean(self, html: str) -> str:
            raise ValueError("broken")

    monkeypatch.setattr(sanitize.nh3, "Cleaner", BrokenCleaner)
    result = sanitize_html("<p>Hello <b>&amp;</b> <script>x</script>bye</p>", cid_url=_no_parts)
    assert result.html == "<pre>Hello &amp; bye</pre>"
    assert result.remote_content_blocked is False


class _Normalizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts.append(f"<{tag}{sorted(attrs)}>")

    def handle_endtag(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _normalized(html: str) -> list[str]:
    """The markup with each element's attributes in one order, which nh3 does not keep."""
    normalizer = _Normalizer()
    normalizer.feed(html)
    normalizer.close()
    return normalizer.parts
