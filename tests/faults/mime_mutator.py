"""A seeded, deterministic mutator of mail: hostile variants of real messages.

Seeds are CPython's test_email messages (the copy in `tests/mime/corpus/cpython`,
found the way `tests/sync/test_resilience.py` finds it), the other `.eml` files of
that corpus, and messages of the bench corpus (`bench/corpus.py`: realistic
structures, charsets and encodings). Each mutated message applies one to three
mutations to one seed:

- truncations: anywhere, inside a multipart (closing delimiter gone), mid-header;
- 1 MB header lines: one token, words, encoded words, address lists, folded lines;
- 5,000 parts in one multipart, and 1,000 levels of nested multiparts or of
  nested message/rfc822;
- bad charsets (unknown, misspelled, codec names that are not charsets, UTF-16 and
  UTF-7 declared over other bytes) and bad transfer encodings (unknown tokens,
  broken base64 and quoted-printable, uuencode garbage);
- byte flips, NUL bytes, mixed line ends, a missing header/body separator, empty
  and duplicated boundaries.

`mutated_message(index, seed)` depends only on its arguments, so a failing index
can be rebuilt alone. `crafted_slow_message()` is a message that takes the full
parser seconds (a To field of spaces makes the address pattern backtrack), to show
the parse time bound cuts it off.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

from bench.corpus import generate_corpus

CORPUS = Path(__file__).resolve().parents[1] / "mime" / "corpus"
BENCH_SEEDS = 300
BENCH_SEED = 16
MEGABYTE = 1024 * 1024

Mutation = Callable[[random.Random, bytes], bytes]


@cache
def seed_messages() -> tuple[bytes, ...]:
    """The messages mutations start from, in a fixed order."""
    files = sorted((CORPUS / "cpython").glob("msg_*.txt")) + sorted(CORPUS.glob("*.eml"))
    cpython = [path.read_bytes() for path in files]
    # Bench messages above 256 KB carry big attachments: mutating them adds bytes to
    # pipe and parse without adding new structure.
    bench = [raw for raw in generate_corpus(BENCH_SEEDS, BENCH_SEED) if len(raw) <= 256 * 1024]
    return (*cpython, *bench)


def crafted_slow_message(spaces: int = 3_000) -> bytes:
    """A message whose full parse takes many seconds but whose header is otherwise fine.

    The time grows with the cube of `spaces` (`mailsvc.mime.headers._SIMPLE_MAILBOX`
    backtracks over the run of spaces in To): 1,500 took 2.7 to 6 s on the loaded
    2-core machine this was written on, so 3,000 takes 20 s or more. If the parser is
    made immune, this needs a new trick: `test_crafted_message_is_slow_without_the_bound`
    says so.
    """
    return (
        b"From: Slow Sender <slow@example.com>\r\n"
        b"To: " + b" " * spaces + b"x\r\n"
        b"Subject: crafted slow header\r\n"
        b"Message-ID: <crafted-slow@example.com>\r\n"
        b"Date: Sat, 05 Dec 2026 12:00:00 +0000\r\n"
        b"\r\n"
        b"The body is fine.\r\n"
    )


def mutated_message(index: int, seed: int = 16) -> bytes:
    """The `index`-th mutated message of the series `seed`."""
    rng = random.Random(seed * 1_000_003 + index)
    seeds = seed_messages()
    raw = seeds[rng.randrange(len(seeds))]
    for mutation in _pick(rng, rng.choice((1, 1, 2, 3))):
        raw = mutation(rng, raw)
    return raw


def _pick(rng: random.Random, count: int) -> list[Mutation]:
    """`count` different mutations, drawn by weight."""
    chosen: list[Mutation] = []
    while len(chosen) < count:
        candidates = [
            (mutation, weight) for mutation, weight in _MUTATIONS if mutation not in chosen
        ]
        mutations, weights = zip(*candidates, strict=True)
        chosen.append(rng.choices(mutations, weights=weights)[0])
    return chosen


def mutated_messages(count: int, seed: int = 16) -> Iterator[bytes]:
    """`count` mutated messages, generated one at a time (a few are over 1 MB)."""
    for index in range(count):
        yield mutated_message(index, seed)


# -- helpers ---------------------------------------------------------------------


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header, separator, body); the separator is empty when there is none."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(separator)
        if at >= 0:
            return raw[:at], separator, raw[at + len(separator) :]
    return raw, b"", b""


def _eol(raw: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in raw[:2000] else b"\n"


def _add_header(raw: bytes, line: bytes) -> bytes:
    header, separator, body = _split(raw)
    eol = _eol(raw)
    return header + eol + line + (separator or eol + eol) + body


def _replace_content_type(raw: bytes, value: bytes) -> bytes:
    """`raw` with its top-level Content-Type (and MIME-Version) replaced by `value`."""
    header, _, body = _split(raw)
    eol = _eol(raw)
    kept = [
        line
        for line in _unfolded_lines(header, eol)
        if not line.lower().startswith((b"content-type:", b"mime-version:"))
    ]
    return eol.join([*kept, b"MIME-Version: 1.0", b"Content-Type: " + value]) + eol + eol + body


def _unfolded_lines(header: bytes, eol: bytes) -> list[bytes]:
    lines: list[bytes] = []
    for line in header.split(eol):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += eol + line
        else:
            lines.append(line)
    return lines


def _boundary(rng: random.Random) -> bytes:
    return b"=_fuzz_%08x" % rng.getrandbits(32)


# -- mutations -------------------------------------------------------------------


def truncate_anywhere(rng: random.Random, raw: bytes) -> bytes:
    return raw[: rng.randrange(len(raw) + 1)]


def truncate_multipart(rng: random.Random, raw: bytes) -> bytes:
    """Cut inside the last part of a multipart, or before its closing delimiter."""
    marker = raw.rfind(b"\n--")
    if marker <= 0:
        return raw[: rng.randrange(len(raw) // 2, len(raw) + 1)]
    if rng.random() < 0.5:
        return raw[:marker]  # the closing delimiter (or the last part) is gone
    start = raw.rfind(b"\n--", 0, marker)
    start = max(start, 0)
    return raw[: rng.randrange(start, marker + 1)]


def huge_header_line(rng: random.Random, raw: bytes) -> bytes:
    """A header line of about 1 MB, of one of several kinds."""
    kind = rng.randrange(6)
    size = MEGABYTE + rng.randrange(1024)
    if kind == 0:
        line = b"X-Token: " + b"A" * size
    elif kind == 1:
        words = b" ".join(b"word%d" % i for i in range(size // 8))
        line = b"Subject: " + words[:size]
    elif kind == 2:
        word = b"=?utf-8?B?w6nDqMOgw7k=?= "
        line = b"Subject: " + word * (size // len(word))
    elif kind == 3:
        address = b"Someone <someone%d@example.com>, "
        line = b"To: " + b"".join(address % i for i in range(size // 32))
    elif kind == 4:
        eol = _eol(raw)
        line = b"X-Folded: " + (b"folded" + eol + b" ") * (size // 9)
    else:
        line = b"Content-Type: text/plain; " + b"x=y; " * (size // 5)
    return _add_header(raw, line)


def many_parts(rng: random.Random, raw: bytes) -> bytes:
    """The body becomes the first of 5,000 parts of a multipart/mixed."""
    _, _, body = _split(raw)
    boundary = _boundary(rng)
    eol = _eol(raw)
    parts = [
        b"Content-Type: text/plain" + eol + eol + body[:2000],
        *(
            b"Content-Type: application/octet-stream; name=p%d.bin" % i
            + eol
            + b"Content-Transfer-Encoding: base64"
            + eol
            + eol
            + b"AAEC"
            for i in range(4_999)
        ),
    ]
    delimiter = eol + b"--" + boundary + eol
    body = delimiter.join([b"", *parts]) + eol + b"--" + boundary + b"--" + eol
    return _replace_content_type(raw, b'multipart/mixed; boundary="' + boundary + b'"') + body


def deep_nesting(rng: random.Random, raw: bytes) -> bytes:
    """1,000 levels of nested multiparts (or of message/rfc822) around the body."""
    eol = _eol(raw)
    header, _, body = _split(raw)
    inner = b"Content-Type: text/plain" + eol + eol + body[:5000]
    levels = 1_000
    if rng.random() < 0.5:
        for level in range(levels):
            boundary = b"n%d" % level
            inner = (
                b'Content-Type: multipart/mixed; boundary="'
                + boundary
                + b'"'
                + eol
                + eol
                + b"--"
                + boundary
                + eol
                + inner
                + eol
                + b"--"
                + boundary
                + b"--"
                + eol
            )
    else:
        for _ in range(levels):
            inner = b"Content-Type: message/rfc822" + eol + eol + b"Subject: nested" + eol + inner
    if rng.random() < 0.3:
        inner = inner[: rng.randrange(len(inner))]  # and truncated somewhere inside
    kept = [
        line
        for line in _unfolded_lines(header, eol)
        if not line.lower().startswith((b"content-", b"mime-version:"))
    ]
    return eol.join([*kept, b"MIME-Version: 1.0"]) + eol + inner


_BAD_CHARSETS = (
    b"x-unknown",
    b"utf-99",
    b"unicode-escape",
    b"raw-unicode-escape",
    b"idna",
    b"utf-16",
    b"utf-32-le",
    b"utf-7",
    b"iso-2022-jp",
    b"",
    b'"',
    b"\xff\xfe",
    b"rot13",
    b"base64",
    b"zlib",
    b"a" * 300,
)
_BAD_ENCODINGS = (
    b"base64",
    b"quoted-printable",
    b"x-uuencode",
    b"x-gzip",
    b"binary; x=1",
    b"7 bit",
    b"\x00",
    b"b" * 300,
)


def bad_charset(rng: random.Random, raw: bytes) -> bytes:
    charset = rng.choice(_BAD_CHARSETS)
    if b"charset=" not in raw.lower():
        return _add_header(raw, b"Content-Type: text/plain; charset=" + charset)
    out = bytearray()
    position = 0
    lower = raw.lower()
    while (found := lower.find(b"charset=", position)) >= 0:
        end = found + len(b"charset=")
        stop = end
        while stop < len(raw) and raw[stop : stop + 1] not in (b";", b"\r", b"\n", b" "):
            stop += 1
        out += raw[position:end] + (charset if rng.random() < 0.7 else raw[end:stop])
        position = stop
    out += raw[position:]
    return bytes(out)


def bad_transfer_encoding(rng: random.Random, raw: bytes) -> bytes:
    encoding = rng.choice(_BAD_ENCODINGS)
    lower = raw.lower()
    found = lower.find(b"content-transfer-encoding:")
    if found < 0:
        raw = _add_header(raw, b"Content-Transfer-Encoding: " + encoding)
    else:
        end = raw.find(b"\n", found)
        end = len(raw) if end < 0 else end
        raw = raw[:found] + b"Content-Transfer-Encoding: " + encoding + raw[end:].lstrip(b"\r")
    header, separator, body = _split(raw)
    garbage = rng.choice((b"=ZZ=\r\n=", b"====", b"!!!@@@", b"begin 644 x\r\nM\xff\r\nend", b"="))
    at = rng.randrange(len(body) + 1)
    return header + separator + body[:at] + garbage + body[at:]


def byte_flips(rng: random.Random, raw: bytes) -> bytes:
    if not raw:
        return raw
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 64)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def nul_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 16)):
        data.insert(rng.randrange(len(data) + 1), 0)
    return bytes(data)


def mixed_line_ends(rng: random.Random, raw: bytes) -> bytes:
    choice = rng.randrange(3)
    if choice == 0:
        return raw.replace(b"\r\n", b"\n")
    if choice == 1:
        return raw.replace(b"\r\n", b"\r")
    return b"".join(
        line + rng.choice((b"\r\n", b"\n", b"\r"))
        for line in raw.replace(b"\r\n", b"\n").split(b"\n")
    )


def no_separator(rng: random.Random, raw: bytes) -> bytes:
    header, _, body = _split(raw)
    return header + _eol(raw) + body


def broken_boundaries(rng: random.Random, raw: bytes) -> bytes:
    """Empty, repeated or prefix-of-each-other boundaries."""
    lower = raw.lower()
    found = lower.find(b"boundary=")
    if found < 0:
        return raw
    end = found + len(b"boundary=")
    stop = end
    while stop < len(raw) and raw[stop : stop + 1] not in (b";", b"\r", b"\n"):
        stop += 1
    replacement = rng.choice((b'""', b"", b'"-"', b'"' + b"-" * 200 + b'"', raw[end:stop][:3]))
    return raw[:end] + replacement + raw[stop:]


# (mutation, weight): the costly ones (over 0.5 MB, or deep) are rarer, so that a run
# of 20,000 stays within a CI budget; each still comes up hundreds of times.
_MUTATIONS: list[tuple[Mutation, int]] = [
    (truncate_anywhere, 8),
    (truncate_multipart, 12),
    (huge_header_line, 1),
    (many_parts, 1),
    (deep_nesting, 1),
    (bad_charset, 10),
    (bad_transfer_encoding, 10),
    (byte_flips, 10),
    (nul_bytes, 5),
    (mixed_line_ends, 5),
    (no_separator, 5),
    (broken_boundaries, 8),
]
