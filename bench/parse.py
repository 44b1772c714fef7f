"""Parsing throughput: `mailsvc.mime.parse_message` against stdlib baselines.

Generates the deterministic corpus of bench/corpus.py (10,000 messages by default)
in memory, then times, on one core and on a pool of two worker processes
(chunksize 64, results shipped back as the sync engine receives them):

- mailsvc: `parse_message`, the parser the sync engine uses;
- baseline: `email` with `policy.default`: headers, `get_body()` text and HTML,
  `iter_attachments()` names and encoded sizes, i.e. the straightforward stdlib way;
- compat32 parse only: `BytesParser(policy=compat32)` building the tree and
  nothing else, the ceiling of any walk over the stdlib's tree.

The pool row of "transfer only" ships each message to a worker and its length back:
the cost of the process boundary itself, which bounds any pool of parsers.

Run: `.venv/bin/python bench/parse.py [--count N] [--seed S] [--no-baseline]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

# bench/ is not a package: make corpus.py importable however this script is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import generate_corpus

from mailsvc.mime import parse_message

WORKERS = 2
CHUNKSIZE = 64


def baseline_parse(raw: bytes) -> tuple[Any, ...]:
    """The stdlib way with policy.default, extracting what parse_message extracts."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        fields = tuple(
            str(message.get(name, ""))
            for name in ("subject", "from", "to", "cc", "message-id", "in-reply-to", "date")
        )
        texts = []
        for kind in ("plain", "html"):
            body = message.get_body(preferencelist=(kind,))
            texts.append(body.get_content() if body is not None else None)
        # Encoded length, not decoded: decoding every attachment would make the
        # baseline slower than the straightforward way needs to be.
        attachments = [
            (part.get_filename(), part.get_content_type(), len(str(part.get_payload())))
            for part in message.iter_attachments()
        ]
        return fields, texts, attachments
    except Exception as exc:  # the baseline may fail where ours must not; count, don't stop
        return (type(exc).__name__,)


def compat32_parse_only(raw: bytes) -> int:
    """Build the compat32 tree and nothing more: the floor of any walk over it."""
    message: Message = BytesParser(policy=policy.compat32).parsebytes(raw)
    return len(message)


def _one_core(function: Callable[[bytes], object], corpus: Sequence[bytes]) -> float:
    start = time.perf_counter()
    for raw in corpus:
        function(raw)
    return time.perf_counter() - start


def _pool(function: Callable[[bytes], object], corpus: Sequence[bytes]) -> float:
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        # Start the workers before the clock: a sync's pool lives for the process.
        list(pool.map(len, [b""] * WORKERS))
        start = time.perf_counter()
        for _ in pool.map(function, corpus, chunksize=CHUNKSIZE):
            pass
        return time.perf_counter() - start


def _report(name: str, mode: str, seconds: float, corpus: Sequence[bytes], size: int) -> None:
    print(
        f"{name:<22} {mode:<10} {len(corpus) / seconds:>8,.0f} msg/s "
        f"{size / seconds / 1e6:>7.1f} MB/s  ({seconds:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true", help="time parse_message only")
    args = parser.parse_args()

    start = time.perf_counter()
    corpus = list(generate_corpus(args.count, args.seed))
    size = sum(len(raw) for raw in corpus)
    lengths = sorted(len(raw) for raw in corpus)
    print(
        f"corpus: {len(corpus):,} messages, {size / 1e6:.0f} MB, median "
        f"{lengths[len(lengths) // 2] / 1e3:.1f} KB, "
        f"p90 {lengths[len(lengths) * 9 // 10] / 1e3:.0f} KB, "
        f"max {lengths[-1] / 1e6:.2f} MB (generated in {time.perf_counter() - start:.1f} s); "
        f"{os.cpu_count()} CPUs"
    )
    noted = sum(bool(parse_message(raw).parse_errors) for raw in corpus[:1000])
    print(f"parse_message notes on {noted} of the first 1,000 messages")

    runs: list[tuple[str, Callable[[bytes], object]]] = [("mailsvc parse_message", parse_message)]
    if not args.no_baseline:
        runs += [
            ("policy.default+get_body", baseline_parse),
            ("compat32 parse only", compat32_parse_only),
        ]
    for name, function in runs:
        _report(name, "1 core", _one_core(function, corpus), corpus, size)
        _report(name, f"{WORKERS} procs", _pool(function, corpus), corpus, size)
    _report("transfer only", f"{WORKERS} procs", _pool(len, corpus), corpus, size)


if __name__ == "__main__":
    main()
