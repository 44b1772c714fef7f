"""parse_message never raises, stays fast on hostile input, and reads the corpora."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from mailsvc.mime import ParsedMessage, parse_message
from tests.mime.samples import CORPUS, CPYTHON, assert_storable, message


def _nesting_bomb(levels: int) -> bytes:
    lines = ["Subject: bomb", "MIME-Version: 1.0"]
    for level in range(levels):
        lines += [f'Content-Type: multipart/mixed; boundary="b{level}"', "", f"--b{level}"]
    lines += ["Content-Type: text/plain", "", "deep"]
    lines += [f"--b{level}--" for level in reversed(range(levels))]
    return "\r\n".join(lines).encode()


def test_nesting_bomb_returns_quickly() -> None:
    raw = _nesting_bomb(10_000)
    start = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - start < 1.0
    assert parsed.subject == "bomb"
    assert [note.split(": ", 1)[1] for note in parsed.parse_errors] == [
        "nested deeper than 30 levels, not descended"
    ]


def test_nested_attached_messages_are_bounded() -> None:
    inner = b"Subject: leaf\r\n\r\nleaf\r\n"
    for _ in range(2_000):
        inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    start = time.perf_counter()
    parsed = parse_message(b"Subject: top\r\n" + inner)
    assert time.perf_counter() - start < 1.0
    assert parsed.subject == "top"
    assert any("nested deeper" in note for note in parsed.parse_errors)


def test_part_count_is_capped() -> None:
    body = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\n{n}\r\n" for n in range(5_000))
    raw = message('Content-Type: multipart/mixed; boundary="b"', body=body + "--b--\r\n")
    start = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - start < 1.0
    assert len(parsed.parts) == 500
    assert "more than 500 parts, the rest not read" in parsed.parse_errors


def test_many_false_boundary_matches_stay_linear() -> None:
    body = "--b" + "x" * 10 + "\n"
    raw = message('Content-Type: multipart/mixed; boundary="b"', body=body * 100_000)
    start = time.perf_counter()
    parse_message(raw)
    assert time.perf_counter() - start < 2.0


def test_hostile_html_stays_linear() -> None:
    html = "<p>" + "<a" * 200_000 + "<script>" * 10_000 + "<!--" * 10_000
    raw = message("Content-Type: text/html", body=html)
    start = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - start < 2.0
    assert_storable(parsed)


def test_huge_header_block_is_bounded() -> None:
    raw = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 50) for n in range(20_000))
    parsed = parse_message(b"Subject: big\r\n" + raw + b"\r\nbody\r\n")
    assert parsed.subject == "big"
    assert_storable(parsed)


def test_long_reply_prefix_chain_and_references() -> None:
    refs = " ".join(f"<{n}@x>" for n in range(20_000))
    parsed = parse_message(message("Subject: " + "Re: " * 10_000 + "x", f"References: {refs}"))
    assert len(parsed.references) == 100


def _corpus_messages() -> list[tuple[str, bytes]]:
    files = sorted(CORPUS.glob("*.eml")) + sorted(CPYTHON.glob("msg_*.txt"))
    return [(path.name, path.read_bytes()) for path in files]


def _mutate(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    kind = rng.randrange(6)
    if kind == 0 and data:  # flip bytes, biased towards syntax that matters to MIME
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.choice(
                [*b'\x00\n\r-=?;"\xff\x80', rng.randrange(256)]
            )
    elif kind == 1:  # truncate
        del data[rng.randrange(len(data) + 1) :]
    elif kind == 2 and data:  # duplicate a chunk somewhere else
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.randint(1, 400)]
        position = rng.randrange(len(data))
        data[position:position] = chunk * rng.randint(1, 5)
    elif kind == 3 and data:  # delete a chunk
        start = rng.randrange(len(data))
        del data[start : start + rng.randint(1, 200)]
    elif kind == 4:  # insert MIME-looking junk at a line start
        junk = rng.choice(
            [
                b"--\r\n",
                b"Content-Type: multipart/mixed; boundary=\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b"=?utf-8?B?////?=",
                b"Content-Type: text/plain; charset=utf-7\r\n\r\n+2D3-\r\n",
                b"\r\n\r\n",
            ]
        )
        position = rng.randrange(len(data) + 1)
        data[position:position] = junk
    else:  # random bytes
        data = bytearray(rng.randbytes(rng.randint(0, 2_000)))
    return bytes(data)


def test_fuzzed_corpus_never_raises() -> None:
    rng = random.Random(20240301)
    corpus = _corpus_messages()
    for _ in range(500):
        name, raw = rng.choice(corpus)
        mutated = _mutate(raw, rng)
        for _ in range(rng.randint(0, 2)):
            mutated = _mutate(mutated, rng)
        parsed = parse_message(mutated)
        assert isinstance(parsed, ParsedMessage), name
        assert_storable(parsed)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda path: path.name)
def test_hand_made_corpus_is_storable(path: Path) -> None:
    assert_storable(parse_message(path.read_bytes()))


def test_cpython_corpus_is_complete() -> None:
    names = {path.name for path in CPYTHON.glob("msg_*.txt")}
    assert len(names) == 48
    assert {"msg_01.txt", "msg_12a.txt", "msg_47.txt"} <= names


@pytest.mark.parametrize("path", sorted(CPYTHON.glob("msg_*.txt")), ids=lambda path: path.name)
def test_every_cpython_message_parses(path: Path) -> None:
    parsed = parse_message(path.read_bytes())
    assert_storable(parsed)
    assert parsed.parts, "every message has at least one numbered part"


def test_cpython_samples_read_sanely() -> None:
    def parse(name: str) -> ParsedMessage:
        return parse_message((CPYTHON / name).read_bytes())

    first = parse("msg_01.txt")
    assert first.subject == "This is a test message"
    assert first.message_id == "15090.61304.110929.45684@aaa.zzz.org"
    assert first.from_[0].address == "bbb@ddd.com"
    assert first.from_[0].name == "John X. Doe"
    assert first.text_body == "\nHi,\n\nDo you like this message?\n\n-Me\n"
    assert first.parse_errors == []

    gif = parse("msg_07.txt")  # text plus a base64 GIF
    assert [(a.section, a.filename, a.content_type) for a in gif.attachments] == [
        ("2", "dingusfish.gif", "image/gif")
    ]

    signed = parse("msg_45.txt")  # multipart/signed: the signature is an attachment
    assert signed.attachments[0].content_type == "application/pgp-signature"

    bounce = parse("msg_16.txt")  # delivery report with the returned message attached
    assert [(a.section, a.content_type) for a in bounce.attachments] == [
        ("2", "message/delivery-status"),
        ("3", "message/rfc822"),
    ]

    no_headers = parse("msg_19.txt")
    assert no_headers.subject is None
    assert no_headers.text_body
