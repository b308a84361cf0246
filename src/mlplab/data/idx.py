"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).

The format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the
values in C order, big-endian. :func:`read_idx` checks every part of that and raises
:class:`IdxError` (a :class:`~mlplab.errors.DataError`) for anything else: it never returns a
half-read array.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from mlplab import atomic
from mlplab.errors import DataError

# dtype code -> big-endian numpy dtype, as the format defines them
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


class IdxError(DataError):
    """A file that is not a valid IDX file: the message names the file and what is wrong."""


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's content, decompressed when it is gzip (detected by content, not by name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IdxError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(
            f"{path} is not a valid gzip file ({exc}); the download was probably cut off. "
            "Fix: delete it and fetch it again (mlplab data fetch)."
        ) from exc


def parse_idx(content: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX ``content`` (already decompressed) into a native-endian array.

    Parameters
    ----------
    content : bytes
        The whole file.
    name : str
        Used in error messages.

    Returns
    -------
    ndarray of shape ``dims`` from the header, dtype from the header's code (native byte order).
    """
    if len(content) < 4:
        raise IdxError(f"{name}: {len(content)} bytes is too short for an IDX header (4 bytes)")
    zero1, zero2, code, ndim = content[0], content[1], content[2], content[3]
    if zero1 != 0 or zero2 != 0:
        raise IdxError(
            f"{name}: bad magic number 0x{content[:4].hex()}: an IDX file starts with two zero "
            "bytes; this is not an IDX file (or it is still compressed with something other than gzip)"
        )
    if code not in DTYPES:
        allowed = ", ".join(f"0x{c:02x}" for c in DTYPES)
        raise IdxError(f"{name}: unknown dtype code 0x{code:02x} in the header (allowed: {allowed})")
    if ndim == 0:
        raise IdxError(f"{name}: the header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(content) < header_len:
        raise IdxError(
            f"{name}: truncated header: {ndim} dimensions need {header_len} bytes, file has {len(content)}"
        )
    dims = struct.unpack(f">{ndim}I", content[4:header_len])
    dtype = DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(content) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise IdxError(
            f"{name}: {what}: dimensions {tuple(dims)} of {dtype.name} need {expected} data bytes, "
            f"found {actual}. Fix: delete the file and fetch it again (mlplab data fetch)."
        )
    data = np.frombuffer(content, dtype=dtype, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array; see :func:`parse_idx`."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (the inverse of :func:`parse_idx`)."""
    array = np.asarray(array)
    for code, dtype in DTYPES.items():
        if array.dtype.newbyteorder(">") == dtype:  # native or big-endian storage of this type
            break
    else:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX, gzip-compressed when ``compress`` (default: name ends in .gz).

    The file is written to a temporary name and renamed into place (no half-written file).
    """
    path = Path(path)
    payload = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    return atomic.write_bytes(path, payload)
