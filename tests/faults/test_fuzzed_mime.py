"""Fuzzed MIME: 20,000 mutated messages parse without a crash, each within the bound.

The parse time bound (`ParserPool`, `SYNC_PARSE_TIMEOUT_SECONDS`) is enforced, not
hoped for: a crafted message that takes the parser seconds is cut off at the bound,
stored from its header with a note, and the worker that ran over is replaced. The
end-to-end test delivers a sample, worst cases included, into the test Dovecot over
LMTP and syncs it with the real engine: every delivered message becomes a row.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import func, select

from mailsvc.mime import ParsedMessage
from mailsvc.models import Message
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.parser import ParseOutcome, ParserPool
from tests.faults.mime_mutator import MEGABYTE, crafted_slow_message, mutated_messages
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget

pytestmark = pytest.mark.faults

FUZZED = 20_000
BATCH = 250  # the sync's default batch
BOUND = 1.0  # SYNC_PARSE_TIMEOUT_SECONDS' default
# Past the bound: the kill, and the scheduling of a loaded 2-core machine.
SLACK = 0.5
CRAFTED_AT = (17, 9_000, 19_990)
CUT_OFF_NOTE = f"parsing took longer than {BOUND:g} s and was cut off"
FAILED_NOTES = ("the parser failed", "the parser process died")


@pytest.fixture
async def pool() -> AsyncIterator[ParserPool]:
    parser = ParserPool(processes=2, timeout_seconds=BOUND)
    yield parser
    await asyncio.to_thread(parser.close)


def _stream() -> Iterator[tuple[bool, bytes]]:
    """(crafted?, message): the 20,000 mutated messages with crafted ones among them."""
    for index, raw in enumerate(mutated_messages(FUZZED)):
        if index in CRAFTED_AT:
            yield True, crafted_slow_message()
        yield False, raw


def _batches() -> Iterator[list[tuple[bool, bytes]]]:
    batch: list[tuple[bool, bytes]] = []
    for item in _stream():
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _assert_cut_off_from_header(outcome: ParseOutcome) -> None:
    message = outcome.message
    assert outcome.cut_off
    assert message.parse_errors[0].startswith(CUT_OFF_NOTE), message.parse_errors
    # Stored from its header: what identifies and threads it is there.
    assert message.subject == "crafted slow header"
    assert message.message_id == "crafted-slow@example.com"
    assert [address.address for address in message.from_] == ["slow@example.com"]


async def test_twenty_thousand_mutated_messages_parse_within_the_bound(pool: ParserPool) -> None:
    parsed = crafted = noted = large = 0
    batches = _batches()
    upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
    while (batch := await upcoming) is not None:
        # The next batch is mutated here while the workers parse this one.
        upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
        outcomes = await pool.parse_outcomes([raw for _, raw in batch])

        assert len(outcomes) == len(batch)
        for (is_crafted, raw), outcome in zip(batch, outcomes, strict=True):
            assert isinstance(outcome.message, ParsedMessage)
            # Measured in the worker; for a cut-off one, until the kill.
            assert outcome.seconds <= BOUND + SLACK, (outcome.seconds, raw[:300])
            notes = outcome.message.parse_errors
            assert not any(note.startswith(FAILED_NOTES) for note in notes), notes
            if is_crafted:
                _assert_cut_off_from_header(outcome)
                crafted += 1
            parsed += 1
            noted += bool(notes)
            large += len(raw) > MEGABYTE

    assert parsed == FUZZED + len(CRAFTED_AT)
    assert crafted == len(CRAFTED_AT)
    # The mutations reach the parser's defect handling, and some carry 1 MB lines.
    assert noted > FUZZED // 3
    assert large > 100
    # Every worker that ran over was replaced: the pool still has its two processes.
    assert pool.replaced >= len(CRAFTED_AT)
    workers = pool.worker_pids()
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, 0)  # alive


async def test_crafted_message_is_slow_without_the_bound() -> None:
    """The premise of the test above: under a bound four times longer, the crafted
    message is still cut off (parsed whole it takes 20 s or more)."""
    patient = ParserPool(processes=1, timeout_seconds=4 * BOUND)
    try:
        [outcome] = await patient.parse_outcomes([crafted_slow_message()])
    finally:
        await asyncio.to_thread(patient.close)
    assert outcome.cut_off, (
        f"the crafted message parsed in {outcome.seconds:.2f} s: the parser no longer "
        "chokes on it; craft another slow message for the bound tests"
    )


async def test_a_parser_process_killed_mid_parse_is_replaced() -> None:
    """A worker that dies by itself (here: SIGKILLed from outside, as the OOM killer
    would) loses no message: the one it was on is stored from its header."""
    pool = ParserPool(processes=1, timeout_seconds=60.0)

    async def kill_the_busy_worker() -> None:
        await asyncio.sleep(0.5)  # well inside the crafted message by now
        os.kill(pool.worker_pids()[0], signal.SIGKILL)

    try:
        await pool.parse([b"Subject: warm-up\r\n\r\nx\r\n"])
        killer = asyncio.ensure_future(kill_the_busy_worker())
        outcome, after = await pool.parse_outcomes(
            [crafted_slow_message(), b"Subject: next\r\n\r\nbody\r\n"]
        )
        await killer
        workers = pool.worker_pids()
    finally:
        await asyncio.to_thread(pool.close)
    assert outcome.cut_off
    assert outcome.message.parse_errors[0].startswith("the parser process died")
    assert outcome.message.subject == "crafted slow header"
    # The rest of the chunk went to the replacement.
    assert after.message.subject == "next"
    assert len(workers) == 1


# -- end to end --------------------------------------------------------------------

SAMPLE = 500
WORST_OF_EACH = 12


def _worst_kind(raw: bytes) -> str | None:
    if len(raw) > MEGABYTE:
        return "1 MB header line"
    if raw.count(b"application/octet-stream; name=p") >= 4_000:
        return "5,000 parts"
    if b'boundary="n999"' in raw or raw.count(b"message/rfc822") >= 900:
        return "1,000 levels"
    return None


def _sample() -> list[bytes]:
    """The crafted messages, the first `WORST_OF_EACH` of each costly mutation, then
    the series in order up to `SAMPLE`."""
    chosen = [crafted_slow_message() for _ in CRAFTED_AT]
    worst: dict[str, int] = {}
    rest: list[bytes] = []
    for raw in mutated_messages(4_000):
        kind = _worst_kind(raw)
        if kind is not None and worst.get(kind, 0) < WORST_OF_EACH:
            worst[kind] = worst.get(kind, 0) + 1
            chosen.append(raw)
        elif kind is None and len(rest) < SAMPLE:
            rest.append(raw)
    assert len(worst) == 3, worst
    return chosen + rest[: SAMPLE - len(chosen)]


def _deliver(dovecot: DovecotServer, username: str, sample: list[bytes]) -> list[str]:
    """Deliver each message over LMTP; the replies of those Dovecot refused."""
    refused: list[str] = []
    for raw in sample:
        try:
            dovecot.deliver(username, raw)
        except smtplib.SMTPException as exc:
            refused.append(str(exc))
    return refused


async def test_fuzzed_sample_delivered_over_lmtp_is_stored_whole(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    sample = await asyncio.to_thread(_sample)
    refused = await asyncio.to_thread(_deliver, dovecot, target.user.username, sample)
    # Dovecot takes every one (LMTP does not judge MIME); a refusal would shrink the
    # sample without a word.
    assert not refused, (len(refused), refused[:5])
    delivered = len(sample)

    report = await engine.sync_account(target.tenant_id, target.account_id)

    assert report.new_messages == delivered
    async with engine.sessionmaker() as session:
        stored = await session.scalar(
            select(func.count()).where(Message.account_id == target.account_id)
        )
        crafted = (
            await session.scalars(
                select(Message.parse_error).where(
                    Message.account_id == target.account_id,
                    Message.subject == "crafted slow header",
                )
            )
        ).all()
    assert stored == delivered
    assert len(crafted) == len(CRAFTED_AT)
    for note in crafted:
        assert note is not None
        assert note.startswith(CUT_OFF_NOTE), note
