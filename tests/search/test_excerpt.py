# CJK text is the point of one case.
"""Highlight excerpts built in Python from the start of a body."""

from __future__ import annotations

from mailsvc.search.excerpt import (
    EXCERPT_SOURCE_CHARS,
    FRAGMENT_SEPARATOR,
    FRAGMENT_WORDS,
    excerpt,
)


def test_matches_are_marked_and_the_text_around_them_is_escaped() -> None:
    text = "Alice & Bob wrote the <b>Report</b>, where x < y."
    assert excerpt(text, {"report"}) == (
        "Alice &amp; Bob wrote the &lt;b&gt;<mark>Report</mark>&lt;/b&gt;, where x &lt; y"
    )


def test_markup_in_the_body_never_becomes_markup() -> None:
    marked = excerpt('<script>alert("report")</script> report', {"report"})
    assert marked is not None
    assert "<" not in marked.replace("<mark>", "").replace("</mark>", "")


def test_no_match_in_the_first_characters_is_no_excerpt() -> None:
    late = "x " * (EXCERPT_SOURCE_CHARS // 2) + "report"
    assert excerpt(late, {"report"}) is None
    assert excerpt("nothing to see", {"report"}) is None
    assert excerpt("a report", set()) is None


def test_whole_words_only() -> None:
    assert excerpt("reports and a reporter", {"report"}) is None
    assert excerpt("alice@acme.test wrote", {"acme"}) == "alice@<mark>acme</mark>.test wrote"


def test_a_long_body_gives_fragments_around_the_matches() -> None:
    body = " ".join(f"w{index}" for index in range(300))
    marked = excerpt(body, {"w150", "w200", "w250"})
    assert marked is not None
    fragments = marked.split(FRAGMENT_SEPARATOR)
    assert len(fragments) == 2
    for fragment in fragments:
        assert len(fragment.replace("<mark>", "").replace("</mark>", "").split()) == FRAGMENT_WORDS
    # The first two matches, each with words of context before it, in text order.
    assert "<mark>w150</mark>" in fragments[0]
    assert fragments[0].startswith("w140 ")
    assert "<mark>w200</mark>" in fragments[1]
    assert "w250" not in marked


def test_the_fragment_with_more_different_words_comes_first() -> None:
    body = " ".join(f"w{index}" for index in range(300))
    body = body.replace("w100 ", "budget ").replace("w210 ", "budget ").replace("w215", "review")
    marked = excerpt(body, {"budget", "review"})
    assert marked is not None
    first, second = marked.split(FRAGMENT_SEPARATOR)
    # Both fragments are kept, in text order; the one with both words is complete.
    assert "<mark>budget</mark>" in first
    assert "<mark>budget</mark>" in second
    assert "<mark>review</mark>" in second


def test_whitespace_is_collapsed() -> None:
    assert excerpt("the\n\n  quarterly\treport", {"report"}) == "the quarterly <mark>report</mark>"


def test_overlapping_cjk_bigrams_are_one_mark() -> None:
    assert excerpt("明天下午的会议通知。", {"会议", "议通"}) == "明天下午的<mark>会议通</mark>知"
