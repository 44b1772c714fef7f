"""decode_text: declared charsets, supersets and fallbacks."""

from __future__ import annotations

import pytest

from mailsvc.mime.charset import codec_for, decode_text


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        ('"iso-8859-1"', "cp1252"),
        ("gb2312", "gb18030"),
        ("ks_c_5601-1987", "cp949"),
        ("Shift_JIS", "cp932"),
        ("utf-8*en", "utf-8"),
        ("x-unknown", None),
        ("base64", None),  # a bytes transform, not a charset
        ("unicode_escape", None),  # refused: an escape interpreter, not a charset
        ("", None),
        (None, None),
    ],
)
def test_codec_for(label: str | None, codec: str | None) -> None:
    assert codec_for(label) == codec


def _decode(data: bytes, charset: str | None) -> tuple[str, list[str]]:
    notes: list[str] = []
    return decode_text(data, charset, notes, "part 1"), notes


def test_superset_characters_decode_without_a_note() -> None:
    assert _decode("€ “quotes”".encode("cp1252"), "iso-8859-1") == ("€ “quotes”", [])
    assert _decode("镕".encode("gb18030"), "gb2312") == ("镕", [])
    assert _decode("①".encode("cp932"), "shift_jis") == ("①", [])


def test_bytes_undefined_in_the_superset_use_the_declared_charset() -> None:
    assert _decode(b"\x81", "iso-8859-1") == ("\x81", [])


def test_utf8_in_a_latin1_label() -> None:
    text, notes = _decode("Grüße".encode(), "iso-8859-1")
    assert text == "Grüße"
    assert notes == ["part 1: declared iso-8859-1 but the bytes are UTF-8"]


def test_8bit_in_us_ascii_reads_as_cp1252() -> None:
    text, notes = _decode("Grüße".encode("cp1252"), "us-ascii")
    assert text == "Grüße"
    assert notes == ["part 1: 8-bit bytes in us-ascii text read as cp1252"]


def test_no_charset_tries_utf8_then_cp1252_quietly() -> None:
    assert _decode("Grüße".encode(), None) == ("Grüße", [])
    assert _decode("Grüße".encode("cp1252"), None) == ("Grüße", [])


def test_unknown_charset_falls_back() -> None:
    text, notes = _decode("é".encode("cp1252"), "x-unknown")
    assert text == "é"
    assert notes == [
        "part 1: unknown charset 'x-unknown'",
        "part 1: 8-bit bytes in x-unknown text read as cp1252",
    ]


def test_wrong_multibyte_label_with_utf8_bytes() -> None:
    text, notes = _decode("Привет".encode(), "shift_jis")
    assert text == "Привет"
    assert notes == ["part 1: declared shift_jis but the bytes are UTF-8"]


def test_undecodable_bytes_are_replaced_in_the_declared_charset() -> None:
    text, notes = _decode("日本".encode("euc-jp") + b"\xff\xff", "euc-jp")
    assert text.startswith("日本")
    assert "\ufffd" in text
    assert notes == ["part 1: bytes invalid in euc-jp replaced"]


def test_ascii_incompatible_charsets_are_not_shortcut() -> None:
    assert _decode("hi".encode("utf-16"), "utf-16") == ("hi", [])
    assert _decode("日本".encode("iso-2022-jp"), "iso-2022-jp") == ("日本", [])


def test_utf7_lone_surrogates_are_replaced() -> None:
    text, _ = _decode(b"+2D3-", "utf-7")
    text.encode("utf-8")
