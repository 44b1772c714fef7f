"""HTML to text and snippets."""

from __future__ import annotations

import time

from mailsvc.mime.text import html_to_text, make_snippet


def test_paragraphs_breaks_and_entities() -> None:
    html = "<p>Caf&eacute; &amp; bar&nbsp;&#8212; ok</p><div>next</div>one<br/>two"
    assert html_to_text(html) == "Café & bar — ok\n\nnext\none\ntwo"


def test_hidden_content_is_dropped() -> None:
    html = (
        "<!DOCTYPE html><html><head><title>Title</title><meta charset=utf-8>"
        "<style type='text/css'>.x { color: red }</style></head>"
        "<body><!--[if mso]><table><tr><td><![endif]-->Visible"
        "<script type='text/javascript'>var x = '<p>no</p>';</script>"
        "<noscript>no script</noscript></body></html>"
    )
    assert html_to_text(html) == "Visible"


def test_head_without_end_tag_stops_at_body() -> None:
    assert html_to_text("<html><head><title>T</title><body>Text</body>") == "Text"


def test_source_whitespace_collapses_but_pre_keeps_lines() -> None:
    html = "<p>one\n   two\tthree</p><pre>line 1\nline 2</pre>"
    assert html_to_text(html) == "one two three\n\nline 1\nline 2"


def test_lists_and_tables() -> None:
    html = "<ul><li>first</li><li>second</li></ul><table><tr><td>a</td><td>b</td></tr></table>"
    assert html_to_text(html) == "- first\n- second\n\na b"


def test_less_than_in_text_survives() -> None:
    assert html_to_text("a < b and c > d") == "a < b and c > d"
    assert html_to_text("<b>x</b> 3 <4") == "x 3 <4"


def test_unclosed_constructs_are_linear() -> None:
    for html in ("<a" * 100_000, "<script>" * 50_000, "<!--" * 50_000, "<pre>" * 50_000):
        start = time.perf_counter()
        html_to_text(html)
        assert time.perf_counter() - start < 1.0, html[:10]


def test_snippet_collapses_whitespace_and_cuts() -> None:
    assert make_snippet("  Hello\n\n   world  ") == "Hello world"
    assert make_snippet("x" * 500) == "x" * 200


def test_snippet_drops_quotes_and_attribution() -> None:
    text = "Yes.\n\nAm 4. März 2024 schrieb Jürgen Müller:\n> Kommst du?\n"
    assert make_snippet(text) == "Yes."


def test_snippet_of_only_quotes_keeps_them() -> None:
    assert make_snippet("> quoted only\n> more") == "> quoted only > more"
