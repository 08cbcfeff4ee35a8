"""A session's GET stream ends without an error in the bridge's log."""

from __future__ import annotations

import logging
import sys

import anyio
import pytest

from taskservice.bridge import transports
from taskservice.testing import running_service

from ..mcp_http import http_bridge, mcp_client

SDK_LOGGER = "mcp.server.streamable_http"


class _StreamClosed(logging.Handler):
    """Sets `closed` at the SDK's debug line for the GET stream's end (so the stream was open)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.closed = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "Closing standalone SSE writer":
            self.closed.set()


async def test_a_client_that_leaves_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """mcp's client opens the session's GET stream, then ends the session with DELETE as it
    leaves: mcp 1.30's transport logs that stream's end as an error with a traceback."""
    caplog.set_level(logging.DEBUG, logger=SDK_LOGGER)
    seen = _StreamClosed()
    logging.getLogger(SDK_LOGGER).addHandler(seen)
    try:
        async with running_service() as svc, http_bridge(svc.target) as url:
            async with mcp_client(url) as session:
                await session.list_tools()
                await anyio.sleep(0.2)  # time for the client to open its GET stream
            with anyio.fail_after(10):
                await seen.closed.wait()
    finally:
        logging.getLogger(SDK_LOGGER).removeHandler(seen)
    errors = [r for r in caplog.records if r.name == SDK_LOGGER and r.levelno >= logging.ERROR]
    assert errors == []


def test_only_the_get_stream_end_is_dropped() -> None:
    """The filter drops that one record, not other errors of the same logger."""
    keep = transports._GetStreamEnd()

    def record(message: str, error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord(SDK_LOGGER, logging.ERROR, __file__, 1, message, None, info)

    assert not keep.filter(record("Error in standalone SSE writer", anyio.ClosedResourceError()))
    assert keep.filter(record("Error in standalone SSE writer", RuntimeError("broken")))
    assert keep.filter(record("Error handling POST request", anyio.ClosedResourceError()))
