"""A worker's Complete and Fail calls over one ReportOutcomes stream held open for its life.

A new gRPC call reaches its handler about half a millisecond later than a message on a call
already open (loopback, grpc.aio: 0.93-0.98 ms against 0.41-0.44 ms here); a tool's outcome
is on the path to the client's result, so the worker sends it on a stream opened beforehand.
`ServiceClient.unary` routes Complete and Fail here while the stream is open and makes the
unary call otherwise; an answer or an error comes back as the unary call's would (an error as
`grpc.aio.AioRpcError` with the same code, message and rich details), so retries, error
translation and the "a retried outcome that went through is a success" rule stay where they
are. A service without ReportOutcomes (UNIMPLEMENTED) gets the unary calls from then on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

import anyio
import grpc
import grpc.aio

from taskservice_client._proto.mcptasks.v1 import task_service_pb2

if TYPE_CHECKING:
    from taskservice_client._client import ServiceClient

log = logging.getLogger("taskservice_client")

pb = task_service_pb2
Outcome = pb.CompleteRequest | pb.FailRequest
Answer = pb.CompleteResponse | pb.FailResponse

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _error(code: grpc.StatusCode, details: str, *trailing: tuple[str, bytes]) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*trailing),
        details=details,
        debug_error_string=f"ReportOutcomes: {code.name}: {details}",
    )


def _closed(why: str) -> grpc.aio.AioRpcError:
    """UNAVAILABLE, which the caller retries (on the stream again, or unary)."""
    return _error(grpc.StatusCode.UNAVAILABLE, f"the outcome stream closed: {why}")


def _refused(error: pb.OutcomeError) -> grpc.aio.AioRpcError:
    """The error a unary Complete or Fail would have raised: code, message, and the
    `google.rpc.Status` trailer (OutcomeError's bytes are that message's)."""
    code = next((c for c in grpc.StatusCode if c.value[0] == error.code), grpc.StatusCode.UNKNOWN)
    return _error(code, error.message, (STATUS_DETAILS_KEY, error.SerializeToString()))


class OutcomeStream:
    """The ReportOutcomes stream of one ServiceClient: `run` holds it, `report` uses it."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client
        self._call: grpc.aio.StreamStreamCall[Any, Any] | None = None
        self._pending: dict[str, asyncio.Future[pb.ReportOutcomesResponse]] = {}
        self._write_lock = asyncio.Lock()
        self.supported = True

    @property
    def is_open(self) -> bool:
        return self._call is not None

    async def run(self) -> None:
        """Hold the stream open until cancelled; open it again after a break, with the client's
        backoff. Ends by itself only when the service does not offer ReportOutcomes."""
        backoff = self._client.retry.backoff()
        while True:
            call = self._client.tasks.ReportOutcomes(metadata=self._client.metadata)
            self._call = call
            why = "the service ended it"
            try:
                async for answer in call:
                    backoff.reset()
                    waiting = self._pending.pop(answer.report_id, None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(answer)
            except grpc.aio.AioRpcError as error:
                why = f"{error.code().name}: {error.details()}"
                if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                    self.supported = False
            finally:
                self._call = None
                call.cancel()
                for waiting in self._pending.values():
                    if not waiting.done():
                        waiting.set_exception(_closed(why))
                self._pending.clear()
            if not self.supported:
                log.info("the service has no ReportOutcomes: outcomes go as unary calls")
                return
            log.debug("outcome stream: %s; opening it again", why)
            delay = backoff.next_delay()
            await anyio.sleep(delay if delay is not None else self._client.retry.max_backoff)

    async def report(self, outcome: Outcome, timeout: float) -> Answer | None:  # noqa: ASYNC109
        """The outcome's answer over the stream, or None when the stream is not open (make the
        unary call). Raises `grpc.aio.AioRpcError` as the unary call would."""
        call = self._call
        if call is None:
            return None
        report_id = secrets.token_urlsafe(12)
        request = pb.ReportOutcomesRequest(report_id=report_id)
        if isinstance(outcome, pb.CompleteRequest):
            request.complete.CopyFrom(outcome)
        else:
            request.fail.CopyFrom(outcome)
        waiting: asyncio.Future[pb.ReportOutcomesResponse] = asyncio.get_running_loop().create_future()
        self._pending[report_id] = waiting
        try:
            try:
                async with self._write_lock:
                    await call.write(request)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
                raise _closed(f"write failed: {error}") from None
            try:
                async with asyncio.timeout(timeout):
                    answer = await waiting
            except TimeoutError:
                raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        finally:
            self._pending.pop(report_id, None)
        kind = answer.WhichOneof("answer")
        if kind == "complete":
            return answer.complete
        if kind == "fail":
            return answer.fail
        if kind == "error":
            raise _refused(answer.error)
        raise _closed("an answer without a result")
