"""Turn bytes in a declared (often wrongly declared) charset into text, never failing.

Mail declares charsets that are missing, misspelled, unknown to Python, or simply
wrong, and mailers write characters of a charset's vendor superset while declaring
the base set. The order tried is: the declared charset's common superset, the
declared charset itself, UTF-8, and finally cp1252 with replacement characters,
which cannot fail. Every step away from the declaration is reported as a note.
"""

from __future__ import annotations

import codecs
from functools import lru_cache

# What senders declare -> what they actually use. A superset decodes every valid
# string of its base set identically, so trying it first costs nothing when the
# declaration is right and rescues the vendor-specific characters when it is not.
SUPERSETS = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "windows-874": "cp874",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "x-unicode20utf8": "utf-8",
}

# Python "text encodings" that are not charsets: a hostile message must not be able to
# select an escape-sequence interpreter or a platform-specific codec.
_REFUSED = frozenset(
    {
        "raw-unicode-escape",
        "unicode-escape",
        "idna",
        "punycode",
        "undefined",
        "mbcs",
        "oem",
        "palmos",
    }
)

# Declared charsets whose text is, in practice, often UTF-8 in disguise: valid
# multi-byte UTF-8 sequences are vanishingly rare in real Latin-1 or cp1252 text.
_OFTEN_UTF8 = frozenset({"ascii", "cp1252", "iso8859-1"})


@lru_cache(maxsize=512)
def codec_for(charset: str | None) -> str | None:
    """The Python codec for a MIME charset label (its superset), or None if unusable."""
    return _codec(charset, superset=True)


@lru_cache(maxsize=512)
def _declared_codec(charset: str | None) -> str | None:
    return _codec(charset, superset=False)


def _codec(charset: str | None, *, superset: bool) -> str | None:
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    # RFC 2231 allows a language suffix on charsets: "utf-8*en".
    label = label.split("*", 1)[0]
    if superset:
        label = SUPERSETS.get(label, label)
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError, TypeError):
        return None
    try:
        # Codecs without a text decoder (base64, zlib, rot13...) raise LookupError here.
        b"a".decode(name)
    except LookupError:
        return None
    except UnicodeDecodeError:
        pass  # a text codec for which one byte is not a whole character (UTF-16...)
    return None if name in _REFUSED else name


@lru_cache(maxsize=128)
def _ascii_compatible(codec: str) -> bool:
    """Whether ASCII bytes mean ASCII in `codec` (not so for UTF-16, UTF-7, EBCDIC...)."""
    if codec.startswith("iso2022"):
        return True  # ASCII unless an ESC sequence switches sets; checked by the caller
    try:
        return bytes(range(128)).decode(codec) == bytes(range(128)).decode("ascii")
    except UnicodeDecodeError:
        return False


def decode_text(data: bytes, charset: str | None, notes: list[str], where: str) -> str:
    """Decode `data` declared as `charset`, never failing.

    Tries, in order: UTF-8 when the declaration is missing or a Latin-1 family label
    (often wrong), the declared charset's superset, the declared charset itself, UTF-8,
    and finally the declared charset (cp1252 when unknown) with replacement characters.
    `notes` gets one line, naming `where` ("subject", "part 1.2"), when the declaration
    was unknown or did not fit the bytes.
    """
    codec = codec_for(charset)
    if charset and codec is None:
        notes.append(f"{where}: unknown charset {_label(charset)!r}")
    if data.isascii() and (codec is None or (_ascii_compatible(codec) and b"\x1b" not in data)):
        # Most mail is ASCII whatever it declares: skip the codec machinery.
        return data.decode("ascii")
    if codec is None or codec in _OFTEN_UTF8:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if codec is not None:
                notes.append(f"{where}: declared {_label(charset)} but the bytes are UTF-8")
            return text
        if codec is None or codec == "ascii":
            # 8-bit text labelled us-ascii (or unlabelled) is mostly Windows Latin-1.
            if charset:
                notes.append(f"{where}: 8-bit bytes in {_label(charset)} text read as cp1252")
            return data.decode("cp1252", errors="replace")
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        pass
    else:
        # UTF-7 can spell lone surrogates, which no database or JSON encoder accepts.
        return _without_surrogates(text) if codec == "utf-7" else text
    declared = _declared_codec(charset)
    if declared is not None and declared != codec:
        try:
            return data.decode(declared)
        except UnicodeDecodeError:
            pass
    if codec != "utf-8":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            notes.append(f"{where}: declared {_label(charset)} but the bytes are UTF-8")
            return text
    # Replacing within the declared charset keeps the good characters, where a blanket
    # cp1252 would turn every multi-byte character into mojibake.
    notes.append(f"{where}: bytes invalid in {_label(charset)} replaced")
    return _without_surrogates(data.decode(codec, errors="replace"))


def _without_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def _label(charset: str | None) -> str:
    return (charset or "").strip()[:40]
