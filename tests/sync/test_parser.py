import tempfile
from pathlib import Path

from mailsvc.sync.parser import SPOOL_BYTES, ParserPool
from tests.sync.messages import make_message


def _spooled_files() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("mailsvc-parse-*"))


async def test_large_messages_reach_the_parser_through_a_file_that_is_removed(
    parser_pool: ParserPool,
) -> None:
    _, small = make_message(1, subject="Small")
    _, large = make_message(2, subject="Large", attachment=b"\x07" * SPOOL_BYTES)
    assert len(large) > SPOOL_BYTES
    before = _spooled_files()

    parsed = await parser_pool.parse([small, large])

    assert [p.subject for p in parsed] == ["Small", "Large"]
    assert parsed[1].attachments[0].size >= SPOOL_BYTES
    assert _spooled_files() == before
