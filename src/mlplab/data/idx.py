"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).

The format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the
values in C order, big-endian. :func:`read_idx` checks every part of that and raises
:class:`IdxError` (a :class:`~mlplab.errors.DataError`) for anything else: it never returns a
half-read array.

Files are read and decompressed in chunks, never more than the header declares (plus one
chunk): a gzip bomb or a file with gigabytes of trailing junk is refused, not loaded into memory.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from mlplab import atomic
from mlplab.atomic import describe_os_error
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
#: The most :func:`read_bytes` reads when the caller sets no ``max_bytes``: far above any IDX data
#: set in use (Fashion-MNIST's largest file has 47 MB), low enough that a header declaring
#: terabytes cannot make it try.
MAX_BYTES = 1 << 32
CHUNK = 1 << 20
_FIX = "Fix: delete it and fetch it again (mlplab data fetch)."


class IdxError(DataError):
    """A file that is not a valid IDX file: the message names the file and what is wrong."""


def read_bytes(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """The content of the IDX file ``path``, decompressed when it is gzip (detected by content).

    The file is read (and decompressed) in chunks. Reading stops as soon as the content passes
    the size its header declares, ``4 + 4 * ndim + prod(dims) * itemsize`` bytes, or
    ``max_bytes`` (default :data:`MAX_BYTES`), whichever is smaller; a header declaring more than
    ``max_bytes`` is refused before its data is read. A header that is not IDX raises at once; a
    truncated file is returned as is, for :func:`parse_idx` to report.

    Raises
    ------
    IdxError
        The file is missing, unreadable, not a regular file, not valid gzip, not IDX, or holds
        more than its header (or ``max_bytes``) allows: a gzip bomb, trailing junk.
    """
    path = Path(path)
    limit = MAX_BYTES if max_bytes is None else max_bytes
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise IdxError(f"{path} is {kind}, not an IDX file. Fix: remove it, or put the IDX file under that name.")
        with open(path, "rb") as handle:
            compressed = handle.read(2) == GZIP_MAGIC
            handle.seek(0)
            if not compressed:
                if info.st_size > limit:  # refused before reading it whole
                    raise IdxError(
                        f"{path} has {info.st_size:,} bytes, more than the {limit:,} expected; "
                        f"it is not the IDX file sought. {_FIX}"
                    )
                return _read_limited(handle, path, limit, compressed=False)
            try:
                with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                    return _read_limited(stream, path, limit, compressed=True)
            except (OSError, EOFError, zlib.error) as exc:
                raise IdxError(
                    f"{path} is not a valid gzip file ({exc}); the download was probably cut off. "
                    "Fix: delete it and fetch it again (mlplab data fetch)."
                ) from exc
    except OSError as exc:
        raise IdxError(
            f"cannot read {path}: {describe_os_error(exc)}. Fix: check the path and its "
            "permissions, or delete it and fetch it again (mlplab data fetch)."
        ) from exc


def _read_limited(stream, path: Path, limit: int, compressed: bool) -> bytes:
    """Read ``stream`` to its end, or raise once it passed its header's declared size or ``limit``."""
    content = bytearray()
    declared = None
    while chunk := stream.read(CHUNK):
        content += chunk
        if declared is None and len(content) >= 4 and len(content) >= 4 + 4 * content[3]:
            dtype, dims, header_len = _parse_header(bytes(content[: 4 + 4 * content[3]]), str(path))
            declared = header_len + math.prod(dims) * dtype.itemsize
            if declared > limit:
                raise IdxError(
                    f"{path}: the header declares dimensions {dims} of {dtype.name}, {declared:,} "
                    f"bytes, more than the {limit:,} expected; not the IDX file sought. {_FIX}"
                )
            limit = declared
        if len(content) > limit:
            verb = "decompresses to" if compressed else "has"
            said = f"the header declares {declared:,}" if declared is not None else "the most expected"
            raise IdxError(f"{path} {verb} more than {limit:,} bytes, {said}; not a valid IDX file. {_FIX}")
    return bytes(content)


def _parse_header(content: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, dims, header length)`` from the start of ``content``, or IdxError saying what is wrong."""
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
        raise IdxError(f"{name}: truncated header: {ndim} dimensions need {header_len} bytes, file has {len(content)}")
    dims = struct.unpack(f">{ndim}I", content[4:header_len])
    return DTYPES[code], dims, header_len


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
    dtype, dims, header_len = _parse_header(content, name)
    expected = math.prod(dims) * dtype.itemsize  # Python ints: 3 dims of 2**32 would wrap an int64
    actual = len(content) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise IdxError(
            f"{name}: {what}: dimensions {tuple(dims)} of {dtype.name} need {expected} data bytes, "
            f"found {actual}. Fix: delete the file and fetch it again (mlplab data fetch)."
        )
    data = np.frombuffer(content, dtype=dtype, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str], max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array; see :func:`read_bytes` and :func:`parse_idx`."""
    return parse_idx(read_bytes(path, max_bytes), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (the inverse of :func:`parse_idx`)."""
    array = np.asarray(array)
    # native or big-endian storage of one of the format's types
    code = next((c for c, d in DTYPES.items() if array.dtype.newbyteorder(">") == d), None)
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX, gzip-compressed when ``compress`` (default: name ends in .gz).

    The file is written to a temporary name and renamed into place (no half-written file).
    """
    path = Path(path)
    payload = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    return atomic.write_bytes(path, payload)
