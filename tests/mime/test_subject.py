"""normalize_subject: the threading key."""

from __future__ import annotations

import time

import pytest

from mailsvc.mime import normalize_subject


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Hello", "hello"),
        ("RE: re: Re:Hello", "hello"),
        ("Fwd: Fw: FW: Hello", "hello"),
        ("AW: WG: Angebot", "angebot"),
        ("SV: VS: Tilbud", "tilbud"),
        ("Antw: Offerte", "offerte"),
        ("Réf: TR: Réunion", "réunion"),
        ("回复: 转发: 会议", "会议"),
        ("回复：会议", "会议"),  # noqa: RUF001 - the full-width colon is the point
        ("[dev-list] Re: [dev-list] Patch review", "patch review"),
        ("Re[2]: Re(3): RE^4: counters", "counters"),
        ("Hello (fwd)", "hello"),
        ("Re: Hello (fwd) (FWD)", "hello"),
        ("  Many    spaces\tand\ttabs  ", "many spaces and tabs"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # casefold, not lower
        ("Re: ", ""),
        ("", ""),
        (None, ""),
        ("Regarding: not a prefix", "regarding: not a prefix"),
        ("Fwdx: not a prefix", "fwdx: not a prefix"),
    ],
)
def test_normalize_subject(subject: str | None, expected: str) -> None:
    assert normalize_subject(subject) == expected


def test_reply_and_original_share_a_key() -> None:
    assert normalize_subject("Re: AW: [team] Quarterly report") == normalize_subject(
        "Quarterly  report"
    )


def test_long_prefix_chain_is_linear() -> None:
    start = time.perf_counter()
    assert normalize_subject("Re: " * 50_000 + "x") == "x"
    assert time.perf_counter() - start < 0.5
