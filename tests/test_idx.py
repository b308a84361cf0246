"""The IDX reader: round trips, precise errors, and a property test over damaged files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlplab.data.idx import IdxError, encode_idx, parse_idx, read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) * 7 - 20).astype(dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / f"x-idx3{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_header_is_the_documented_big_endian_layout():
    content = encode_idx(np.array([[1, 2, 3]], dtype=np.int16))
    # 0x00 0x00, dtype code 0x0B (int16), 2 dims; dims 1 and 3 as big-endian uint32; data big-endian
    assert content == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 1, 0, 2, 0, 3])


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    (tmp_path / "plain.gz").write_bytes(encode_idx(array))  # misleading name, raw content
    (tmp_path / "packed").write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed"), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x1f\x00\x08\x01" + b"\x00" * 8, "bad magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05" + b"\x01\x02", "truncated: dimensions (5,)"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01" + b"\x01\x02", "has trailing bytes"),
    ],
)
def test_corrupt_headers_are_named(content, message):
    with pytest.raises(IdxError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_idx(content, "some-file")
    assert "some-file" in str(info.value)


def test_truncated_gzip_says_which_file_and_how_to_fix(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(encode_idx(np.arange(1000, dtype=np.uint8)))[:-20])
    with pytest.raises(IdxError, match="labels.gz is not a valid gzip file.*Fix: delete it"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(IdxError, match="cannot read"):
        read_idx(tmp_path / "nope")


def test_write_is_atomic_on_failure(tmp_path):
    with pytest.raises(ValueError, match="IDX cannot store dtype"):
        write_idx(tmp_path / "x", np.array(["a"]))
    assert list(tmp_path.iterdir()) == []


valid_arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: arrays(dt, st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    array=valid_arrays,
    compress=st.booleans(),
    damage=st.sampled_from(["none", "truncate", "flip", "append", "random"]),
    where=st.floats(0, 1),
    bit=st.integers(0, 7),
    junk=st.binary(min_size=0, max_size=64),
)
def test_damaged_files_load_valid_data_or_raise_the_documented_error(
    tmp_path_factory, array, compress, damage, where, bit, junk
):
    content = encode_idx(array)
    if compress:
        content = gzip.compress(content, mtime=0)
    position = min(int(where * len(content)), len(content) - 1)
    if damage == "truncate":
        content = content[:position]
    elif damage == "flip":
        content = content[:position] + bytes([content[position] ^ (1 << bit)]) + content[position + 1 :]
    elif damage == "append":
        content = content + (junk or b"\x00")
    elif damage == "random":
        content = junk
    path = tmp_path_factory.mktemp("h") / "f"
    path.write_bytes(content)
    try:
        loaded = read_idx(path)
    except IdxError:
        return  # the documented error; anything else fails the test
    assert isinstance(loaded, np.ndarray)
    assert loaded.nbytes + 4 + 4 * loaded.ndim <= len(
        gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    )
    if damage == "none":
        np.testing.assert_array_equal(loaded, array)
