"""`die_with_parent`'s check for a parent that died before the child asked the kernel
to be told (the SIGKILLed case is tests/sync/test_parser_children.py)."""

import multiprocessing
import os
import sys

import pytest

from mailsvc.kit.processes import die_with_parent


def _exit_code(parent_pid: int) -> int | None:
    child = multiprocessing.get_context("spawn").Process(target=die_with_parent, args=(parent_pid,))
    child.start()
    child.join(timeout=30)
    return child.exitcode


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals are Linux-only")
def test_a_child_whose_parent_is_already_gone_exits_at_once() -> None:
    # Not this process: to the child, the parent it was meant for has died.
    assert _exit_code(parent_pid=os.getppid()) == 1


def test_a_child_of_a_live_parent_carries_on() -> None:
    assert _exit_code(parent_pid=os.getpid()) == 0
