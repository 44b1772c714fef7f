import asyncio

from mailsvc.kit.tasks import cancel_and_wait


async def test_tasks_that_failed_or_ignore_one_cancel_are_stopped_quietly() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def swallows_the_first_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass  # what Python 3.11's wait_for can do to a cancellation
        await asyncio.sleep(60)

    failed = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    stubborn = asyncio.ensure_future(swallows_the_first_cancel())
    await asyncio.sleep(0)

    await asyncio.wait_for(cancel_and_wait([failed, stubborn]), 5)

    assert stubborn.cancelled()
    # Retrieved: a task whose error nobody read would be logged by asyncio at exit.
    assert failed._log_traceback is False  # type: ignore[attr-defined]
