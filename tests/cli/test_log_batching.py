"""Lines logged on the event loop are written together at the end of the loop's turn."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from open_ticket_ai.cli.log_format import LoopBatching


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, CountingStream, LoopBatching]]:
    stream = CountingStream()
    handler = LoopBatching(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.batching")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield log, stream, handler
    log.removeHandler(handler)
    handler.close()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_turns_lines_are_written_once_when_it_ends(logged) -> None:
    log, stream, _ = logged

    async def main() -> list[str]:
        for n in range(3):
            log.info("line %d", n)
        during = lines(stream)
        await asyncio.sleep(0)  # the turn ends
        return during

    assert asyncio.run(main()) == []
    assert lines(stream) == ["INFO line 0", "INFO line 1", "INFO line 2"]
    assert stream.writes == 1


def test_an_error_is_written_at_once_after_what_waits(logged) -> None:
    log, stream, _ = logged

    async def main() -> list[str]:
        log.info("before")
        log.error("broken")
        return lines(stream)

    assert asyncio.run(main()) == ["INFO before", "ERROR broken"]


def test_without_a_loop_each_line_is_written_at_once(logged) -> None:
    log, stream, _ = logged
    log.info("one")
    assert lines(stream) == ["INFO one"]
    log.warning("two")
    assert lines(stream) == ["INFO one", "WARNING two"]


def test_a_long_turn_writes_every_max_waiting_lines(logged) -> None:
    log, stream, handler = logged

    async def main() -> int:
        for n in range(handler.MAX_WAITING + 1):
            log.info("%d", n)
        return len(lines(stream))

    assert asyncio.run(main()) == handler.MAX_WAITING
    assert len(lines(stream)) == handler.MAX_WAITING + 1


def test_flush_writes_what_a_stopped_loop_left_waiting(logged) -> None:
    log, stream, handler = logged
    loop = asyncio.new_event_loop()

    async def log_and_stop() -> None:
        log.info("left")
        loop.stop()  # the turn's write is scheduled but never runs

    task = loop.create_task(log_and_stop())
    loop.run_forever()
    assert task.done()
    loop.close()
    assert lines(stream) == []
    handler.flush()
    assert lines(stream) == ["INFO left"]

    async def again() -> None:  # a new loop gets its own write
        log.info("next")
        await asyncio.sleep(0)

    asyncio.run(again())
    assert lines(stream) == ["INFO left", "INFO next"]


def test_a_line_from_another_thread_comes_after_what_waits(logged) -> None:
    import threading

    log, stream, _ = logged

    async def main() -> list[str]:
        log.info("on the loop")
        thread = threading.Thread(target=log.info, args=("in a thread",))
        thread.start()
        thread.join()  # in the same turn: the loop's line still waits
        return lines(stream)

    assert asyncio.run(main()) == ["INFO on the loop", "INFO in a thread"]


def test_close_writes_and_closes_a_stream_it_owns(tmp_path) -> None:
    stream = (tmp_path / "log.txt").open("a", encoding="utf-8")
    handler = LoopBatching(stream, owns_stream=True)
    record = logging.makeLogRecord({"msg": "kept", "levelno": logging.INFO})

    async def main() -> None:
        handler.handle(record)

    asyncio.run(main())
    handler.close()
    assert stream.closed
    assert (tmp_path / "log.txt").read_text() == "kept\n"
