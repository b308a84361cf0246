"""Hostile and mistaken input to the data layer: every case ends in an mlplab error naming the
file or flag, the value and the fix; nothing is left behind, nothing blows up memory or disk.

No test touches the network: downloads come from a fake ``urlopen``, ``file://`` mirrors or a
bounded HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import http.server
import os
import re
import shutil
import struct
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_house import make_houses, write_csvs
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data import fashion_mnist, idx, sources
from mlplab.data.idx import IdxError, encode_idx, read_bytes, read_idx
from mlplab.errors import ConfigError, DataError, MlplabError
from mlplab.house import check_schema
from mlplab.house import data as house_data
from mlplab.house import load as house_load

runner = CliRunner()
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def assert_clean_cli_error(result, *needles: str) -> None:
    """Exit status 2, the needles in the one-line message, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "error:" in result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)


def copy_all(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def accept(path: Path) -> None:
    """A ``verify`` that accepts any download."""


@pytest.fixture(autouse=True)
def house_offline(monkeypatch):
    """House Prices downloads never reach the network either."""
    for kind, known in house_data.FILES.items():
        monkeypatch.setitem(house_data.FILES, kind, replace(known, url="file:///nonexistent/x.csv"))


# --------------------------------------------------------------------------------------------
# 1. Downloads are capped: an endless or oversized response is stopped, nothing is left behind
# --------------------------------------------------------------------------------------------


class FakeResponse:
    """An HTTP response that never ends (or announces ``length`` bytes)."""

    def __init__(self, length: int | None = None) -> None:
        self.headers = {} if length is None else {"Content-Length": str(length)}
        self.reads = 0

    def read(self, n: int) -> bytes:
        self.reads += 1
        return b"x" * n

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


@pytest.fixture
def fake_urlopen(monkeypatch):
    """Replace ``urllib.request.urlopen`` by one serving the given :class:`FakeResponse`."""

    def install(response: FakeResponse) -> FakeResponse:
        monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: response)
        return response

    return install


def test_endless_download_is_stopped_at_max_bytes_and_leaves_nothing(tmp_path, fake_urlopen):
    response = fake_urlopen(FakeResponse())
    dest = tmp_path / "dl" / "file.gz"
    with pytest.raises(DataError, match=r"(?s)http://mirror.example/file.gz.*more than 1,000,000 bytes.*stopped"):
        sources.download(["http://mirror.example/file.gz"], dest, accept, retries=1, max_bytes=1_000_000)
    assert response.reads <= 1_000_000 // sources.CHUNK + 2  # stopped right after the limit
    assert list(dest.parent.iterdir()) == []  # no temp file, no dest


def test_announced_oversize_is_refused_before_reading(tmp_path, fake_urlopen):
    response = fake_urlopen(FakeResponse(length=10**12))
    dest = tmp_path / "dl" / "file.gz"
    with pytest.raises(DataError, match=r"announces 1,000,000,000,000 bytes, more than the 5,000.*stopped"):
        sources.download(["http://mirror.example/file.gz"], dest, accept, retries=1, max_bytes=5000)
    assert response.reads == 0
    assert list(dest.parent.iterdir()) == []


class EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Streams zeros without a Content-Length, bounded so that the thread always ends."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(200):  # 12.5 MiB at most, even if the client never hung up
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass  # the client stopped reading: what we want

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endless_server(monkeypatch):
    """``http://127.0.0.1:PORT/`` serving endless files; loopback only, never a proxy."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EndlessHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_endless_download_from_a_loopback_server_is_stopped(tmp_path, endless_server):
    dest = tmp_path / "dl" / "file.gz"
    with pytest.raises(DataError, match=r"(?s)127\.0\.0\.1.*more than 300,000 bytes.*stopped"):
        sources.download([endless_server + "file.gz"], dest, accept, timeout=5, retries=1, max_bytes=300_000)
    assert list(dest.parent.iterdir()) == []


def test_fashion_mnist_downloads_are_capped_by_the_file_spec(fake_fashion_mnist, tmp_path, monkeypatch):
    spec = fashion_mnist.FILES["train_images"]
    assert spec.max_download == 2 * spec.nbytes + 2**20
    mirror = copy_all(fake_fashion_mnist, tmp_path / "mirror")
    with open(mirror / f"{spec.name}.gz", "wb") as f:  # a huge file (sparse: no disk used)
        f.truncate(spec.max_download + 1)
    monkeypatch.setattr(fashion_mnist, "MIRRORS", (mirror.as_uri() + "/",))
    with pytest.raises(DataError, match=rf"(?s)could not download {spec.name}.gz.*{spec.max_download:,}.*stopped"):
        fashion_mnist.fetch(None, retries=1)
    cache = sources.cache_dir() / "fashion-mnist"
    assert not any(spec.name in p.name for p in cache.iterdir())


def test_real_fashion_mnist_sizes_fit_the_caps():
    """The decompressed sizes of the upstream files (see ../shared/data/README.md) are the specs'."""
    sizes = {"train_images": 47040016, "train_labels": 60008, "test_images": 7840016, "test_labels": 10008}
    gz = {"train_images": 26421880, "train_labels": 29515, "test_images": 4422102, "test_labels": 5148}  # upstream .gz
    for key, spec in fashion_mnist.FILES.items():
        assert spec.nbytes == sizes[key]
        assert gz[key] < spec.max_download


def test_house_download_is_capped_by_the_known_size(tmp_path, monkeypatch):
    assert house_data.FILES["train"].size == 460676 and house_data.FILES["test"].size == 451405
    big = tmp_path / "mirror" / "train.csv"
    big.parent.mkdir()
    with open(big, "wb") as f:
        f.truncate(house_data.FILES["train"].size + 1)
    monkeypatch.setitem(house_data.FILES, "train", replace(house_data.FILES["train"], url=big.as_uri()))
    with pytest.raises(DataError, match=r"(?s)kaggle_house_pred_train.csv.*460,676.*stopped"):
        house_load(None)
    assert list((sources.cache_dir() / "house-prices").iterdir()) == []


def test_an_unwritable_cache_is_a_data_error_naming_it(fake_fashion_mnist, tmp_path, monkeypatch):
    mirror = copy_all(fake_fashion_mnist, tmp_path / "mirror")
    monkeypatch.setattr(fashion_mnist, "MIRRORS", (mirror.as_uri() + "/",))
    (sources.cache_dir() / "fashion-mnist").write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match=r"cannot write the download .*fashion-mnist.*Fix:"):
        fashion_mnist.fetch(None, retries=1)


def test_a_disk_full_while_downloading_is_reported_not_retried(tmp_path, fake_urlopen, monkeypatch):
    response = fake_urlopen(FakeResponse(length=10))
    real_fetch = sources._fetch

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(sources, "_fetch", lambda url, out, *rest: real_fetch(url, Full(), *rest))
    dest = tmp_path / "dl" / "file.gz"
    with pytest.raises(
        DataError, match=r"cannot write the download .*file.gz: no space left on the device\. Fix: free"
    ):
        sources.download(["http://a/", "http://b/"], dest, accept, retries=3)
    assert response.reads == 1  # neither retried nor tried on the next mirror
    assert list(dest.parent.iterdir()) == []


# --------------------------------------------------------------------------------------------
# 2. Temp files of killed downloads are removed; a live process's are kept
# --------------------------------------------------------------------------------------------


def make_temps(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / f".train-images-idx3-ubyte.tmp-{dead_pid()}-abcd1234.gz"
    live = folder / f".train-images-idx3-ubyte.tmp-{os.getpid()}-efgh5678.gz"
    stale.write_bytes(b"half a download")
    live.write_bytes(b"a download in progress")
    return stale, live


def test_download_removes_stale_temp_files_beside_the_target(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "dl" / "train-images-idx3-ubyte.gz"
    stale, live = make_temps(dest.parent)
    sources.download([src.as_uri()], dest, accept, retries=1)
    assert dest.read_bytes() == b"payload"
    assert not stale.exists() and live.exists()


def test_fetch_removes_stale_temp_files_in_the_cache(fake_fashion_mnist):
    cache = copy_all(fake_fashion_mnist, sources.cache_dir() / "fashion-mnist")
    stale, live = make_temps(cache)
    fashion_mnist.fetch(None, download=False)  # nothing to download: the cache is cleaned anyway
    assert not stale.exists() and live.exists()


# --------------------------------------------------------------------------------------------
# 3. IDX files are never read or decompressed past their declared or expected size
# --------------------------------------------------------------------------------------------


def idx_header(dims: tuple[int, ...], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def test_gzip_bomb_is_refused_after_the_declared_size(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(idx_header((10,)) + bytes(50_000_000), compresslevel=9))
    assert path.stat().st_size < 200_000
    start = time.perf_counter()
    with pytest.raises(
        IdxError, match=r"bomb.gz decompresses to more than 18 bytes, the header declares 18.*Fix: delete it"
    ):
        read_idx(path)
    assert time.perf_counter() - start < 2.0  # one chunk decompressed, not 50 MB


def test_header_declaring_more_than_max_bytes_is_refused_before_reading(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_header((1000, 1000)) + bytes(1000)))
    with pytest.raises(
        IdxError, match=r"header declares dimensions \(1000, 1000\) of uint8, 1,000,012 bytes, more than the 5,000"
    ):
        read_bytes(path, max_bytes=5000)


def test_header_declaring_terabytes_is_refused_by_default(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_header((2**32 - 1, 2**32 - 1, 2**32 - 1)))  # would wrap an int64
    with pytest.raises(IdxError, match=r"header declares .* more than the 4,294,967,296 expected"):
        read_idx(path)


def test_raw_file_far_larger_than_expected_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge-idx1-ubyte"
    with open(path, "wb") as f:
        f.write(idx_header((10,)))
        f.truncate(idx.MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(
        IdxError, match=r"huge-idx1-ubyte has 4,294,967,297 bytes, more than the 4,294,967,296 expected"
    ):
        read_idx(path)


def test_raw_file_with_trailing_junk_stops_at_the_declared_size(tmp_path):
    path = tmp_path / "junk-idx1-ubyte"
    path.write_bytes(encode_idx(np.arange(10, dtype=np.uint8)) + bytes(3 * idx.CHUNK))
    with pytest.raises(IdxError, match=r"has more than 18 bytes, the header declares 18"):
        read_idx(path)


def test_load_file_caps_at_the_file_spec(fake_fashion_mnist):
    spec = fashion_mnist.FILES["test_labels"]
    bigger = (np.arange(spec.shape[0] * 100) % 10).astype(np.uint8)  # valid IDX, 100x the size
    (fake_fashion_mnist / f"{spec.name}.gz").write_bytes(gzip.compress(encode_idx(bigger)))
    with pytest.raises(
        IdxError, match=rf"{spec.name}.gz: the header declares .* more than the {spec.nbytes:,} expected"
    ):
        fashion_mnist.load(fake_fashion_mnist, download=False)


def test_not_an_idx_file_is_refused_at_the_first_chunk(tmp_path):
    path = tmp_path / "page.gz"
    path.write_bytes(gzip.compress(b"<html>" + b" " * 10_000_000))  # an error page, say
    with pytest.raises(IdxError, match="bad magic number"):
        read_idx(path)


# --------------------------------------------------------------------------------------------
# 4. --timeout and --retries are checked by the library (so by the CLI too)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [-1.0, 0.0, float("nan"), float("inf"), 1e9, "30", True])
def test_bad_timeout_is_a_config_error(timeout):
    with pytest.raises(
        ConfigError, match=r"timeout = .* is invalid: the timeout in seconds must be a number in \(0, 3600\]"
    ):
        fashion_mnist.fetch(None, timeout=timeout)
    with pytest.raises(ConfigError, match="timeout"):
        sources.download(["http://a/"], Path("unused"), accept, timeout=timeout)


@pytest.mark.parametrize("retries", [0, -1, 1.5, 1000, True])
def test_bad_retries_is_a_config_error(retries):
    with pytest.raises(ConfigError, match=r"retries = .* is invalid: must be an integer >= 1 and <= 100"):
        fashion_mnist.fetch(None, retries=retries)


def test_bad_max_bytes_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="max_bytes = 0"):
        sources.download(["http://a/"], tmp_path / "x", accept, max_bytes=0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--timeout", "-1"], "timeout = -1.0"),
        (["--timeout", "nan"], "timeout = nan"),
        (["--timeout", "0"], "timeout = 0.0"),
        (["--retries", "0"], "retries = 0"),
    ],
)
def test_cli_fetch_rejects_bad_timeout_and_retries(fake_fashion_mnist, args, needle):
    result = runner.invoke(app, ["data", "fetch", "--data-dir", str(fake_fashion_mnist), *args])
    assert_clean_cli_error(result, needle, "is invalid")


# --------------------------------------------------------------------------------------------
# 5. An explicit --data-dir is the only place searched
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cached_fashion_mnist(fake_fashion_mnist):
    """A valid copy in the user cache: the one a typo in --data-dir must not silently pick."""
    return copy_all(fake_fashion_mnist, sources.cache_dir() / "fashion-mnist")


def test_mistyped_data_dir_is_an_error_not_the_cache(cached_fashion_mnist, tmp_path):
    with pytest.raises(DataError, match=r"--data-dir .*fmnits does not exist\. Fix: check the spelling"):
        fashion_mnist.load(tmp_path / "fmnits", download=False)
    with pytest.raises(DataError, match="does not exist"):
        fashion_mnist.fetch(tmp_path / "fmnits")  # download allowed: still an error


def test_data_dir_that_is_a_file_is_an_error(cached_fashion_mnist, tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(DataError, match=r"--data-dir .*file.txt is not a folder"):
        fashion_mnist.load(file, download=False)
    with pytest.raises(DataError, match="empty path"):
        fashion_mnist.load("", download=False)


def test_data_dir_missing_a_file_names_it_and_does_not_download(cached_fashion_mnist, tmp_path, monkeypatch):
    partial = copy_all(cached_fashion_mnist, tmp_path / "partial")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setattr(fashion_mnist, "MIRRORS", (cached_fashion_mnist.as_uri() + "/",))  # would work
    shutil.rmtree(cached_fashion_mnist)
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte\(\.gz\) not found in --data-dir .*partial \(only that folder"
    ):
        fashion_mnist.fetch(partial)
    assert not (sources.cache_dir() / "fashion-mnist").exists()  # nothing downloaded


def test_a_directory_named_like_the_idx_file_is_not_taken_for_it(fake_fashion_mnist):
    (fake_fashion_mnist / "train-images-idx3-ubyte.gz").unlink()
    (fake_fashion_mnist / "train-images-idx3-ubyte.gz").mkdir()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\(\.gz\) not found in --data-dir"):
        fashion_mnist.load(fake_fashion_mnist, download=False)


def test_cli_data_info_with_a_mistyped_data_dir(cached_fashion_mnist, tmp_path):
    result = runner.invoke(app, ["data", "info", "--data-dir", str(tmp_path / "typo")])
    assert_clean_cli_error(result, "--data-dir", "typo", "does not exist")
    result = runner.invoke(app, ["data", "fetch", "--data-dir", ""])
    assert_clean_cli_error(result, "--data-dir is an empty path")


def test_house_mistyped_or_partial_data_dir_is_an_error(tmp_path, monkeypatch):
    write_csvs(tmp_path / "env" / "house-prices")  # a good copy elsewhere: never silently used
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"--data-dir .*hosue does not exist"):
        house_load(tmp_path / "hosue", verify=False)
    partial = write_csvs(tmp_path / "partial")
    (partial / "test.csv").unlink()
    with pytest.raises(
        DataError, match=r"no test file \(test.csv or kaggle_house_pred_test.csv\) in --data-dir .*partial"
    ):
        house_load(partial, verify=False)
    assert not (sources.cache_dir() / "house-prices").exists()  # and no download was tried


def test_cli_house_with_a_mistyped_data_dir(tmp_path):
    result = runner.invoke(app, ["house", "cv", "--models", "ridge", "--data-dir", str(tmp_path / "typo")])
    assert_clean_cli_error(result, "--data-dir", "typo", "does not exist")


@pytest.mark.skipif(AS_ROOT, reason="root reads any folder")
def test_unsearchable_data_dir_is_named(fake_fashion_mnist):
    os.chmod(fake_fashion_mnist, 0o000)
    try:
        with pytest.raises(DataError, match=r"cannot look for .* in .*fmnist.*permission denied"):
            fashion_mnist.load(fake_fashion_mnist, download=False)
    finally:
        os.chmod(fake_fashion_mnist, 0o755)


# --------------------------------------------------------------------------------------------
# 6. House Prices numbers must be finite and plausible
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("LotArea", np.inf, "inf"),
        ("LotArea", -np.inf, "-inf"),
        ("GrLivArea", 1e308, "1e+308"),
        ("MiscVal", -2e9, "-2e+09"),
        ("YearBuilt", 1e10, "1e+10"),
    ],
)
@pytest.mark.parametrize("kind", ["train", "test"])
def test_infinite_or_absurd_feature_is_named_with_ids(column, value, shown, kind):
    frame = make_houses(10, with_price=kind == "train")
    frame.loc[3, column] = value
    with pytest.raises(
        DataError,
        match=rf"column {column} must hold finite numbers of magnitude at most 1e\+09.*1 value\(s\).*Id 4: {re.escape(shown)}.*Fix:",
    ):
        check_schema(frame, kind)


def test_missing_features_are_still_fine_and_at_most_five_ids_are_listed():
    frame = make_houses(20)
    frame.loc[:, "LotArea"] = np.nan  # blank = missing: allowed
    check_schema(frame, "train")
    frame.loc[2:9, "LotArea"] = np.inf
    with pytest.raises(DataError, match=r"8 value\(s\)") as info:
        check_schema(frame, "train")
    assert str(info.value).count("Id ") == 5


@pytest.mark.parametrize("price", [1e308, 2e9, np.inf])
def test_absurd_price_is_rejected(price):
    frame = make_houses(10)
    frame.loc[6, "SalePrice"] = price
    with pytest.raises(DataError, match=r"SalePrice must be a positive number of at most 1e\+09 dollars.*Id 7"):
        check_schema(frame, "train")


def test_infinite_text_in_a_csv_is_rejected(tmp_path):
    frame = make_houses(10)
    frame["LotArea"] = frame["LotArea"].astype(object)
    frame.loc[0, "LotArea"] = "inf"
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train.csv: column LotArea .*Id 1: inf"):
        house_data.read_csv(tmp_path / "train.csv", "train")


@pytest.mark.parametrize("bad_id", [np.inf, 1e300])
def test_non_finite_or_huge_ids_do_not_crash(bad_id):
    frame = make_houses(5)
    frame["Id"] = frame["Id"].astype(float)
    frame.loc[0, "Id"] = bad_id
    if np.isinf(bad_id):
        with pytest.raises(DataError, match="column Id must hold unique, finite"):
            check_schema(frame, "train")
    else:
        assert check_schema(frame, "train")["Id"].iloc[0] == 1e300  # kept as a float, not wrapped


def test_repeated_column_is_rejected():
    frame = make_houses(5)
    frame = pd.concat([frame, frame[["LotArea"]]], axis=1)
    with pytest.raises(DataError, match="column\\(s\\) LotArea more than once"):
        check_schema(frame, "train")


# --------------------------------------------------------------------------------------------
# 7. Unreadable, binary, special and oversized files
# --------------------------------------------------------------------------------------------


def test_idx_path_that_is_a_folder_or_a_fifo(tmp_path):
    (tmp_path / "dir-idx1-ubyte").mkdir()
    with pytest.raises(IdxError, match=r"dir-idx1-ubyte is a folder, not an IDX file"):
        read_idx(tmp_path / "dir-idx1-ubyte")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(IdxError, match=r"fifo is not a regular file"):  # and does not block on open
        read_idx(tmp_path / "fifo")


def test_unreadable_idx_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(encode_idx(np.arange(3, dtype=np.uint8)))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(idx, "open", denied, raising=False)  # as root, chmod would not stop us
    with pytest.raises(IdxError, match=r"cannot read .*x-idx1-ubyte: permission denied\. Fix:"):
        read_idx(path)


def write_train(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "train.csv"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            make_houses(3).to_csv(index=False).replace("NAmes", "Naméss").encode("latin-1"),
            r"it is not UTF-8 text \(it holds byte 0xe9\)",
        ),
        (bytes(range(256)) * 40, r"cannot read train file .*train.csv: "),
        (b"", r"cannot read train file .*train.csv: No columns to parse"),
        (b'a,b\n1,2\n3,4,5,6\n"unclosed', r"cannot read train file .*train.csv: Error tokenizing data"),
    ],
    ids=["latin-1", "binary", "empty", "ragged"],
)
def test_house_csv_that_is_not_a_readable_table(tmp_path, content, message):
    path = write_train(tmp_path, content)
    with pytest.raises(DataError, match=message) as info:
        house_data.read_csv(path, "train")
    assert "\n" not in str(info.value)


def test_house_csv_that_is_a_folder_or_too_big(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match=r"dir.csv: it is a folder"):
        house_data.read_csv(tmp_path / "dir.csv", "train")
    with pytest.raises(DataError, match=r"cannot read test file .*nope.csv: No such file"):
        house_data.read_csv(tmp_path / "nope.csv", "test")
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(house_data.MAX_CSV_BYTES + 1)  # sparse
    with pytest.raises(DataError, match=r"big.csv has 104,857,601 bytes, more than the 104,857,600"):
        house_data.read_csv(big, "train")


def test_house_csv_named_folder_in_data_dir_is_skipped_and_reported(tmp_path):
    folder = write_csvs(tmp_path / "hp")
    (folder / "train.csv").unlink()
    (folder / "train.csv").mkdir()
    with pytest.raises(DataError, match=r"no train file .* in --data-dir"):
        house_load(folder, verify=False)


def test_unreadable_house_csv_is_named(tmp_path, monkeypatch):
    folder = write_csvs(tmp_path / "hp")

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sources, "sha256_of_file", denied)
    with pytest.raises(DataError, match=r"cannot read train file .*train.csv: permission denied"):
        house_load(folder)
    monkeypatch.setattr(pd, "read_csv", denied)
    with pytest.raises(DataError, match=r"cannot read train file .*train.csv: permission denied"):
        house_load(folder, verify=False)


def test_every_error_here_is_an_mlplab_error():
    """The CLI prints these as one line (no traceback): they must all derive from MlplabError."""
    for exc in (IdxError, DataError, ConfigError):
        assert issubclass(exc, MlplabError)
