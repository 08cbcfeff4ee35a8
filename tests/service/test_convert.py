"""The domain <-> proto conversions of the servicers."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from taskservice.grpc_api.convert import timestamp


@pytest.mark.parametrize("ms", [0, 1, 999, 1_000, 1_795_319_078_452, -1, -999, -1_000, -1_500])
def test_timestamp_is_what_from_milliseconds_makes(ms: int) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromMilliseconds(ms)
    assert timestamp(ms) == expected
    assert timestamp(ms).ToMilliseconds() == ms
