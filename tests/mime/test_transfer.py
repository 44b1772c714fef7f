"""Incremental transfer decoding gives what decoding the whole part at once gives."""

import base64
import quopri
import random

import pytest

from mailsvc.mime.transfer import TransferDecoder


def _decode_in_chunks(encoding: str, data: bytes, sizes: list[int]) -> bytes:
    decoder = TransferDecoder(encoding)
    out = bytearray()
    position = 0
    for size in sizes:
        out += decoder.feed(data[position : position + size])
        position += size
    out += decoder.feed(data[position:])
    out += decoder.finish()
    return bytes(out)


@pytest.mark.parametrize("seed", range(20))
def test_base64_in_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    payload = rng.randbytes(rng.randrange(0, 5000))
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    sizes = [rng.randrange(1, 90) for _ in range(200)]
    assert _decode_in_chunks("base64", encoded, sizes) == payload


@pytest.mark.parametrize("seed", range(20))
def test_quoted_printable_in_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    payload = bytes(rng.choice(b"abc =\t\xe9\xff\r\n") for _ in range(rng.randrange(0, 4000)))
    encoded = quopri.encodestring(payload)
    sizes = [rng.randrange(1, 50) for _ in range(300)]
    assert _decode_in_chunks("Quoted-Printable", encoded, sizes) == quopri.decodestring(encoded)


def test_base64_with_garbage_and_missing_padding_still_decodes() -> None:
    encoded = base64.b64encode(b"hello world!!").rstrip(b"=")
    damaged = encoded[:4] + b"\x00!*" + encoded[4:]
    assert _decode_in_chunks("base64", damaged, [3, 5]) == b"hello world!!"


def test_a_quoted_printable_line_without_end_does_not_grow_without_bound() -> None:
    decoder = TransferDecoder("quoted-printable")
    out = bytearray()
    for _ in range(40):
        out += decoder.feed(b"a" * 4096)
    assert len(out) > 100_000  # decoded on the way, not held back
    out += decoder.finish()
    assert bytes(out) == b"a" * 40 * 4096


@pytest.mark.parametrize("encoding", [None, "7bit", "8bit", "binary", "x-unknown"])
def test_other_encodings_pass_through(encoding: str | None) -> None:
    assert _decode_in_chunks(encoding or "", b"\x00\xffraw", [1, 1]) == b"\x00\xffraw"
