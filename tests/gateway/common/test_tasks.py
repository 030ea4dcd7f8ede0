"""A task that must not die: its death by an exception ends the process with EX_SOFTWARE."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import NoReturn

import pytest

from gateway.common.tasks import EXIT_SOFTWARE, exit_if_died


class Exited(Exception):
    pass


async def run_to_end(body: object) -> list[int]:
    """Run a task whose coroutine returns or raises ``body``; the exit codes it asked for."""
    codes: list[int] = []

    def fake_exit(code: int) -> NoReturn:
        codes.append(code)
        raise Exited

    async def work() -> None:
        if isinstance(body, BaseException):
            raise body

    task = asyncio.create_task(work(), name="vital")
    task.add_done_callback(exit_if_died("vital work", fake_exit))
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)  # the done-callback runs in the next loop iteration
    return codes


@pytest.mark.asyncio
async def test_a_task_that_raises_exits_the_process() -> None:
    assert await run_to_end(RuntimeError("a bug")) == [EXIT_SOFTWARE]


@pytest.mark.asyncio
async def test_a_task_that_returns_exits_nothing() -> None:
    assert await run_to_end(None) == []


@pytest.mark.asyncio
async def test_a_cancelled_task_exits_nothing() -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> NoReturn:
        codes.append(code)
        raise Exited

    task = asyncio.create_task(asyncio.sleep(3600))
    task.add_done_callback(exit_if_died("sleeper", fake_exit))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert codes == []


def test_the_process_exits_70_and_says_why_first() -> None:
    script = """
import asyncio, structlog
from gateway.common.tasks import exit_if_died
structlog.configure(processors=[structlog.processors.JSONRenderer()])

async def main():
    async def broken():
        raise ValueError("boom")
    task = asyncio.create_task(broken(), name="sink-writer-raw")
    task.add_done_callback(exit_if_died("sink writer"))
    await asyncio.sleep(10)
    print("still running")

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_SOFTWARE == 70
    [line] = [json.loads(line) for line in done.stdout.splitlines()]
    assert line["event"] == "sink writer died" and line["task"] == "sink-writer-raw"
    assert "boom" in line["error"]
