"""Data URIs are decoded slice by slice: the same bytes as one decode, the same refusals."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagestudio.adapters.images import _BASE64_SLICE, decode_data_uri
from imagestudio.domain.errors import InvalidParameters

PREFIX = "data:image/png;base64,"
EDGES = [0, 1, 2, 3, _BASE64_SLICE // 4 * 3 - 1, _BASE64_SLICE // 4 * 3, _BASE64_SLICE // 4 * 3 + 1]


@pytest.mark.parametrize("size", [*EDGES, 3 * _BASE64_SLICE + 7])
def test_sliced_decoding_gives_the_bytes_of_one_decode(size: int) -> None:
    data = bytes(i * 7 % 256 for i in range(size))
    assert decode_data_uri(PREFIX + base64.b64encode(data).decode(), "seedImage") == data


@settings(max_examples=60, deadline=None)
@given(payload=st.text(alphabet="ABCab01+/=!\n ", max_size=40))
def test_sliced_decoding_accepts_and_refuses_what_one_strict_decode_does(payload: str) -> None:
    try:
        expected: bytes | None = base64.b64decode(payload, validate=True)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(InvalidParameters) as refused:
            decode_data_uri(PREFIX + payload, "seedImage")
        assert refused.value.details == {"field": "seedImage"}
    else:
        assert decode_data_uri(PREFIX + payload, "seedImage") == expected


def test_padding_before_the_last_slice_is_refused() -> None:
    first = base64.b64encode(b"x" * (_BASE64_SLICE // 4 * 3 - 1)).decode()  # one slice, ending in "="
    assert len(first) == _BASE64_SLICE
    assert first.endswith("=")
    with pytest.raises(InvalidParameters):
        decode_data_uri(PREFIX + first + base64.b64encode(b"abc").decode(), "seedImage")
