"""Finding, verifying and downloading Fashion-MNIST, on generated files."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from mlplab.data import fashion_mnist, fashion_mnist_data, sources
from mlplab.data.idx import encode_idx
from mlplab.errors import DataError


def copy_all(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def test_loads_and_converts_like_to_tensor(fake_fashion_mnist):
    data = fashion_mnist_data(fake_fashion_mnist, download=False)
    raw = fashion_mnist.load(fake_fashion_mnist, download=False)
    assert data.train.X.shape == (96, 784) and data.test.X.shape == (48, 784)
    np.testing.assert_allclose(data.train.X.numpy(), raw.train_images.reshape(96, -1) / 255.0, rtol=1e-6)
    assert data.train.y.dtype.is_floating_point is False
    np.testing.assert_array_equal(data.test.y.numpy(), raw.test_labels)


def test_search_order(fake_fashion_mnist, tmp_path, monkeypatch):
    env_root = tmp_path / "env"
    copy_all(fake_fashion_mnist, env_root / "fashion-mnist")
    system = copy_all(fake_fashion_mnist, tmp_path / "system")
    cache = copy_all(fake_fashion_mnist, sources.cache_dir() / "fashion-mnist")
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(system))
    monkeypatch.setenv("MLPLAB_DATA", str(env_root))

    def where():
        return fashion_mnist.find_file("train_images", data_dir).parent

    data_dir = fake_fashion_mnist
    assert where() == fake_fashion_mnist  # 1. --data-dir
    data_dir = None
    assert where() == env_root / "fashion-mnist"  # 2. $MLPLAB_DATA/fashion-mnist
    monkeypatch.delenv("MLPLAB_DATA")
    assert where() == cache  # 3. user cache
    shutil.rmtree(cache)
    assert where() == system  # 4. system folder (Debian's /usr/share/datasets/fashion-mnist)
    labels = [d.label for d in sources.search_dirs("fashion-mnist", None, "y")]
    assert labels == ["user cache", "system"]
    # an explicit --data-dir is the only place searched (no silent fallback to another copy)
    assert [d.label for d in sources.search_dirs("fashion-mnist", tmp_path, "y")] == ["--data-dir"]


def test_raw_files_are_accepted_too(fake_fashion_mnist, tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for f in fake_fashion_mnist.iterdir():
        (raw_dir / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    data = fashion_mnist.load(raw_dir, download=False)
    assert data.paths["test_labels"].name == "t10k-labels-idx1-ubyte"


def test_missing_files_name_the_fixes(tmp_path):
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte\(\.gz\) not found.*mlplab data fetch.*apt-get install dataset-fashion-mnist",
    ):
        fashion_mnist.load(tmp_path, download=False)


def test_checksum_mismatch_is_reported_not_loaded(fake_fashion_mnist):
    path = fake_fashion_mnist / "t10k-labels-idx1-ubyte.gz"
    labels = fashion_mnist.load(fake_fashion_mnist, download=False).test_labels.copy()
    labels[0] = (labels[0] + 1) % 10  # a valid IDX file with the wrong content
    path.write_bytes(gzip.compress(encode_idx(labels)))
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256 of the content is .*expected .*Fix: delete it"
    ):
        fashion_mnist.load(fake_fashion_mnist, download=False)


def test_download_goes_to_cache_atomically_and_verified(fake_fashion_mnist, tmp_path, monkeypatch):
    mirror = copy_all(fake_fashion_mnist, tmp_path / "mirror")
    monkeypatch.setattr(fashion_mnist, "MIRRORS", ("file:///nonexistent/", mirror.as_uri() + "/"))
    seen = []
    paths = fashion_mnist.fetch(None, retries=1, progress=lambda done, total: seen.append((done, total)))
    cache = sources.cache_dir() / "fashion-mnist"
    assert all(p.parent == cache for p in paths.values())
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in mirror.iterdir())  # no .part left
    assert seen and seen[-1][0] > 0
    fashion_mnist.load(None, download=False)  # now found in the cache, verified


def test_a_mirror_serving_wrong_content_leaves_nothing_behind(fake_fashion_mnist, tmp_path, monkeypatch):
    mirror = copy_all(fake_fashion_mnist, tmp_path / "mirror")
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    monkeypatch.setattr(fashion_mnist, "MIRRORS", (mirror.as_uri() + "/",))
    with pytest.raises(
        DataError,
        match=r"(?s)could not download train-images-idx3-ubyte.gz.*not a valid gzip file.*Fix: check the network",
    ):
        fashion_mnist.fetch(None, retries=2)
    cache = sources.cache_dir() / "fashion-mnist"
    assert not any("train-images" in p.name for p in cache.iterdir())  # no temporary file either


def test_real_data_smoke(real_fashion_mnist):
    """On the real files: checksums verified, shapes and balanced classes as documented upstream."""
    data = fashion_mnist.load(real_fashion_mnist, download=False)
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


def test_the_smoke_tests_find_the_data_where_the_loaders_do(fake_fashion_mnist, tmp_path, monkeypatch):
    # the copy the main job installed (here: a cache holding the four files) is found without MLPLAB_DATA
    import conftest

    cache = tmp_path / "user-cache"
    (cache / "fashion-mnist").mkdir(parents=True)
    for f in fake_fashion_mnist.iterdir():
        (cache / "fashion-mnist" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(sources, "cache_dir", lambda: cache)
    assert conftest._installed_fashion_mnist() == cache / "fashion-mnist"
    (cache / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()  # incomplete: not a copy to test on
    assert conftest._installed_fashion_mnist() is None
