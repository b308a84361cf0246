"""mlplab.report.browser: a page checked in headless Chromium (images, errors, external URLs, overflow, screenshot).

The tests that need Chromium skip where none is installed (``scripts/install-browser.sh``); the
error paths run everywhere, with a stand-in browser script where one must be started. Each page is
tiny and each Chromium start costs about a second, so the browser tests start it ten times in all.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image

from mlplab.errors import MlplabError
from mlplab.report import browser
from mlplab.report.browser import PageCheck, check_page, console_errors, find_browser, main

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no Chromium: scripts/install-browser.sh installs it")

# Lines of this machine's Chromium 150 stderr for a page that threw, as `check_page` gets them.
REAL_STDERR = """\
/usr/bin/chromium: 9: [: 25275973632: unexpected operator
[16929:16956:1202/195331.738945:ERROR:dbus/bus.cc:405] Failed to connect to the bus: Failed to connect to socket /run/dbus/system_bus_socket: No such file or directory
[16972:16972:1202/195331.790653:WARNING:media/gpu/vaapi/vaapi_wrapper.cc:1655] drmGetDevices2() has not found any devices
[16972:16972:1202/195331.829095:WARNING:sandbox/policy/linux/sandbox_linux.cc:405] InitializeSandbox() called with multiple threads in process gpu-process.
[16929:16929:1202/195331.893974:ERROR:dbus/object_proxy.cc:572] Failed to call method: org.freedesktop.DBus.NameHasOwner: object_path= /org/freedesktop/DBus: unknown error type:
[16929:16929:1202/195331.918031:WARNING:ui/base/idle/idle_linux.cc:111] None of the known D-Bus ScreenSaver services could be used.
[16929:16929:1202/195332.122945:INFO:CONSOLE:2] "boom-console", source: file:///tmp/bx/p.html (2)
[16929:16929:1202/195332.123959:INFO:CONSOLE:3] "Uncaught ReferenceError: undefined_function is not defined", source: file:///tmp/bx/p.html (3)
[0101/000000.000000:ERROR:CONSOLE(7)] "old-style error", source: file:///tmp/old.html (7)
"""


def png_data_uri(width: int, height: int, color: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_page(tmp_path: Path, name: str, body: str, head: str = "") -> Path:
    page = tmp_path / name
    page.write_text(
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{name}</title>{head}</head>\n'
        f"<body>\n{body}\n</body></html>\n",
        encoding="utf-8",
    )
    return page


def good_page(tmp_path: Path) -> Path:
    return write_page(
        tmp_path,
        "good.html",
        f'<h1>Résumé</h1><img alt="red" src="{png_data_uri(16, 12, "red")}">'
        f'<img alt="blue" src="{png_data_uri(20, 10, "blue")}">'
        '<svg width="40" height="20" viewBox="0 0 40 20"><rect width="40" height="20" fill="green"/>'
        '<svg x="5"><circle r="3"/></svg></svg><p><a href="#top">top</a></p>',
    )


def broken_page(tmp_path: Path) -> Path:
    not_a_png = base64.b64encode(b"\x89PNG\r\n\x1a\n this is not a PNG").decode("ascii")
    return write_page(
        tmp_path,
        "broken.html",
        f'<img alt="fine" src="{png_data_uri(8, 8, "black")}"><img alt="figure 2" src="data:image/png;base64,{not_a_png}">',
    )


def fake_browser(tmp_path: Path, script: str) -> str:
    """A stand-in browser: a shell script that ignores its arguments and runs ``script``."""
    path = tmp_path / "fake-chromium"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


# --- without a browser -------------------------------------------------------------------------


def test_no_browser_found_says_how_to_install_one(tmp_path, monkeypatch):
    monkeypatch.delenv(browser.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    page = good_page(tmp_path)
    assert find_browser() is None
    with pytest.raises(MlplabError) as caught:
        check_page(page)
    assert "scripts/install-browser.sh" in str(caught.value)
    assert "apt-get install chromium" in str(caught.value)


def test_env_var_names_the_browser(tmp_path, monkeypatch):
    fake = fake_browser(tmp_path, "exit 0")
    monkeypatch.setenv(browser.ENV_VAR, fake)
    assert find_browser() == fake
    monkeypatch.setenv(browser.ENV_VAR, str(tmp_path / "missing-chromium"))
    assert find_browser() is None  # not silently replaced by whatever is on PATH
    with pytest.raises(MlplabError, match=r"MLPLAB_CHROMIUM = .*missing-chromium.* is not an executable"):
        check_page(good_page(tmp_path))


def test_missing_page_is_an_error(tmp_path, capsys):
    missing = tmp_path / "nope" / "report.html"
    with pytest.raises(MlplabError, match=r"the page .*report\.html does not exist"):
        check_page(missing)
    with pytest.raises(MlplabError, match="is a folder, not a file"):
        check_page(tmp_path)
    assert main([str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_failing_browser_quotes_its_stderr_without_the_noise(tmp_path):
    fake = fake_browser(
        tmp_path,
        "echo '[1:2:1202/195331.738945:ERROR:dbus/bus.cc:405] Failed to connect to the bus' >&2\n"
        "echo 'FATAL: cannot open the profile folder' >&2\nexit 3",
    )
    with pytest.raises(MlplabError) as caught:
        check_page(good_page(tmp_path), browser=fake)
    message = str(caught.value)
    assert "exit status 3" in message and "cannot open the profile folder" in message
    assert "dbus" not in message


def test_hanging_browser_is_killed_at_the_timeout(tmp_path):
    fake = fake_browser(tmp_path, "sleep 30 &\nsleep 30")  # a child in the process group too
    start = time.monotonic()
    with pytest.raises(MlplabError, match=r"did not finish within 0\.5 s"):
        check_page(good_page(tmp_path), browser=fake, timeout=0.5)
    assert time.monotonic() - start < 10


def test_a_page_whose_check_never_reports_is_not_ok(tmp_path):
    fake = fake_browser(tmp_path, "echo '<html><head></head><body>replaced</body></html>'")
    check = check_page(good_page(tmp_path), browser=fake)
    assert not check.checked and not check.ok
    assert "never reported" in check.errors[0]
    assert str(check).startswith("NOT CHECKED")


def test_console_errors_keep_only_errors_from_chromiums_log():
    assert console_errors(REAL_STDERR) == [
        "Uncaught ReferenceError: undefined_function is not defined (file:///tmp/bx/p.html:3)",
        "old-style error (file:///tmp/old.html:7)",
    ]


def test_summary_lines():
    fine = PageCheck(3, 1, (), (), (), None, False)
    assert fine.ok and str(fine) == "ok (3 images, 1 svg)"
    bad = PageCheck(1, 0, ("fig",), ("boom",), ("https://x",), Path("s.png"), True)
    assert not bad.ok
    assert (
        str(bad)
        == "NOT OK: 1 broken image, 1 error, 1 external URL (1 image, 0 svgs, scrolls sideways); screenshot s.png"
    )
    assert bad.details() == ["broken image: fig", "error: boom", "external URL: https://x"]


# --- in Chromium -------------------------------------------------------------------------------


@needs_browser
def test_good_page_passes_and_is_screenshot(tmp_path):
    shot = tmp_path / "shots" / "good.png"
    check = check_page(good_page(tmp_path), shot, width=640, height=480)
    assert check.ok, check.details()
    assert (check.images, check.svgs) == (2, 1)
    assert check.broken == check.errors == check.external == ()
    assert not check.text_overflow
    assert check.screenshot == shot
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as image:
        assert image.size == (640, 480)
    assert [p.name for p in shot.parent.iterdir()] == ["good.png"]  # no temporary file left


@needs_browser
def test_broken_image_is_reported(tmp_path):
    check = check_page(broken_page(tmp_path))
    assert not check.ok
    assert check.images == 2
    assert check.broken == ("figure 2",)
    assert any("failed to load <img> data:image/png" in error for error in check.errors)
    assert check.screenshot is None


@needs_browser
def test_script_errors_are_reported(tmp_path):
    page = write_page(
        tmp_path,
        "errors.html",
        "<p>text</p><script>console.error('boom', 42)</script>"
        "<script>Promise.reject(new Error('rejected-promise'))</script>",
        head="<script>undefined_function()</script>",  # before anything else of the page: caught all the same
    )
    check = check_page(page)
    assert not check.ok and check.broken == ()
    assert [e for e in check.errors if "undefined_function" in e] == [
        f"Uncaught ReferenceError: undefined_function is not defined ({page.resolve().as_uri()}:2)"
    ]  # once, though both the script and Chromium's log saw it; with the original file's name
    assert "console.error: boom 42" in check.errors
    assert any(e.startswith("Uncaught (in promise)") and "rejected-promise" in e for e in check.errors)


@needs_browser
def test_external_urls_are_listed(tmp_path):
    page = write_page(
        tmp_path,
        "external.html",
        f'<img alt="local" src="{png_data_uri(4, 4, "white")}"><img alt="remote" src="https://example.com/x.png">'
        '<a href="#top">top</a><a href="about:blank">blank</a>',
        head='<style>body { background: url("https://example.com/bg.png"); }</style>',
    )
    check = check_page(page)
    assert not check.ok
    assert check.external == ("https://example.com/bg.png", "https://example.com/x.png")  # in document order
    assert check.broken == ("remote",)  # no network in a check: it fails to load, at once


@needs_browser
@pytest.mark.parametrize("div_width, overflow", [(3000, True), (450, True), (390, False)])
def test_text_overflow_at_the_viewport_width(tmp_path, div_width, overflow):
    # 450 px at a 400 px viewport: a plain --window-size would lay the page out at least 500 px wide
    page = write_page(
        tmp_path, "wide.html", f'<div style="width: {div_width}px">wide</div>', head="<style>body { margin: 0 }</style>"
    )
    check = check_page(page, width=400, height=300)
    assert check.text_overflow is overflow
    assert check.ok, check.details()


@needs_browser
def test_cli_exit_status(tmp_path, capsys):
    assert main([str(good_page(tmp_path)), "--width", "800", "--height", "600"]) == 0
    assert ": ok (2 images, 1 svg)" in capsys.readouterr().out
    assert main([str(broken_page(tmp_path))]) == 1
    out = capsys.readouterr().out
    assert "NOT OK" in out and "broken image: figure 2" in out
