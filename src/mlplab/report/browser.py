"""Check a self-contained HTML page in headless Chromium: every image loads, nothing errs, nothing is fetched.

``mlplab report`` writes one page with its figures inlined (``<img src="data:image/png;base64,...">``
or inline ``<svg>``) and no external URL. :func:`check_page` opens such a page the way a reader's
browser does and returns a :class:`PageCheck`: how many images and SVGs it shows, which images did
not decode, which console errors, uncaught exceptions and failed resource loads happened, which
URLs point outside the file, whether the page scrolls sideways at the given width, and
(optionally) a screenshot.

How: the page is copied into a temporary folder with a ``<script>`` inserted as the very first
element of ``<head>`` (so it sees the errors of the page's own scripts, and runs before any
Content-Security-Policy ``<meta>`` of the page applies), and a ``<base>`` pointing at the original
folder (so relative URLs resolve as in the original). The script wraps ``console.error``, listens
to ``error`` in the capturing phase (which also sees the failed loads of ``<img>``, ``<script>``
and ``<link>``, events that do not bubble) and to ``unhandledrejection``; once the page has loaded
(lazy images are made eager and waited for) it writes a JSON summary into a hidden
``<pre id="mlplab-page-check">``, and rewrites it on every later error. Chromium runs once with
``--dump-dom`` and ``--virtual-time-budget`` (timers run without real waiting; the DOM is printed
when the budget is spent) and the summary is parsed from its output. Its ``--enable-logging``
output adds the uncaught exceptions it logs (``CONSOLE ... "Uncaught ..."``), in case the page
replaced the summary; every other line of its stderr (D-Bus, GPU, VA-API, sandbox and fontconfig
warnings, Debian's launcher script) is noise on a headless server and is ignored. The
screenshot is a second run on the original page, written atomically.

The viewport is exactly ``width`` x ``height``: ``--kiosk`` with ``--screen-info`` makes the
window fill a screen of that size (a plain ``--window-size`` keeps a 500 px minimum width and
subtracts the height of a simulated toolbar). Every host name resolves to nothing
(``--host-resolver-rules``), so an external URL fails at once, never hangs, and never leaks a
request. Only the standard library and a Chromium binary are needed:
``scripts/install-browser.sh`` installs one (Debian/Ubuntu: ``apt-get install chromium``).

>>> from mlplab.report.browser import check_page
>>> check = check_page("runs/report/report.html", "runs/report/report.png")  # doctest: +SKIP
>>> check.ok, check.images, check.errors  # doctest: +SKIP
(True, 14, ())

From the shell: ``python -m mlplab.report.browser runs/report/report.html --screenshot shot.png``
(exit status 0: ok, 1: problems found, 2: the page could not be checked).
"""

from __future__ import annotations

import argparse
import contextlib
import html as html_lib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlplab.atomic import atomic_path
from mlplab.errors import MlplabError, check_int

#: Environment variable naming the browser binary; overrides the search of :data:`BROWSER_NAMES`.
ENV_VAR = "MLPLAB_CHROMIUM"
#: Binaries looked for on PATH, in this order.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: ``id`` of the ``<pre>`` the checking script writes its JSON summary into.
RESULT_ID = "mlplab-page-check"
#: Milliseconds of virtual time the page gets to load and run its timers.
VIRTUAL_TIME_MS = 5000
INSTALL_HINT = "run `bash scripts/install-browser.sh` (Debian/Ubuntu: `apt-get install chromium`)"

_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
    "--kiosk",
    f"--virtual-time-budget={VIRTUAL_TIME_MS}",
)
# `[pid:tid:date/time:LEVEL:CONSOLE(line)] "message", source: url (line)`; Chromium 150 writes `CONSOLE:line]`.
_CONSOLE_RE = re.compile(
    r'^\[[^\]]*?:(?P<level>[A-Z]+):CONSOLE[(:][^\]]*\]\s*"(?P<message>.*)", source: (?P<source>.*)$'
)
# Lines of Chromium's stderr that say nothing about the page: left out of the tail an error message quotes.
_NOISE_RE = re.compile(
    r"dbus|d-bus|bus\.cc|vaapi|libva|drmGetDevices|\bgpu|\bgles|\begl|viz_main|ozone|sandbox|fontconfig|"
    r"idle_linux|bluez|floss|upower|dconf|crashpad|gcm_|unexpected operator",
    re.IGNORECASE,
)
_RESULT_RE = re.compile(rf'<pre id="{RESULT_ID}"[^>]*>(.*?)</pre>', re.DOTALL)
_HEAD_RE = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_HTML_RE = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_DOCTYPE_RE = re.compile(r"<!doctype\b[^>]*>", re.IGNORECASE)
_BASE_RE = re.compile(r"<base\b", re.IGNORECASE)

# The checking script. It runs before anything of the page and reports into <pre id=RESULT_ID>.
_CHECK_JS = r"""
(() => {
  "use strict";
  const RESULT_ID = "__RESULT_ID__";
  const OWN = "data-mlplab-check";
  const errors = [];
  let settled = false;
  const short = (text) => (text.length > 60 ? text.slice(0, 60) + "..." : text);
  const describe = (value) => {
    if (value instanceof Error) return value.stack || String(value);
    if (typeof value === "string") return value;
    try { return JSON.stringify(value); } catch (e) { return String(value); }
  };
  const where = (event) => (event.filename ? ` (${event.filename}:${event.lineno})` : "");

  const consoleError = console.error;
  console.error = function (...args) {
    errors.push("console.error: " + args.map(describe).join(" "));
    report();
    return consoleError.apply(this, args);
  };
  window.addEventListener("error", (event) => {
    const target = event.target;
    if (target && target !== window && target.tagName) {  // a resource that failed to load
      const url = target.currentSrc || target.src || target.href || target.getAttribute("src") || "";
      errors.push(`failed to load <${target.tagName.toLowerCase()}> ${short(url)}`);
    } else {
      errors.push((event.message || describe(event.error)) + where(event));
    }
    report();
  }, true);
  window.addEventListener("unhandledrejection", (event) => {
    errors.push("Uncaught (in promise) " + describe(event.reason));
    report();
  });

  const isLocal = (url) => /^\s*(data:|blob:|about:|javascript:|#|$)/i.test(url);
  const cssUrls = (css) => [...css.matchAll(/url\(\s*(['"]?)(.*?)\1\s*\)|@import\s+(['"])(.*?)\3/gi)].map(
    (m) => m[2] || m[4] || "");
  function externalUrls() {
    const found = new Set();
    for (const el of document.querySelectorAll("*")) {
      if (el.hasAttribute(OWN)) continue;
      for (const name of ["src", "href", "xlink:href", "poster", "data", "action"]) {
        const value = el.getAttribute(name);
        if (value !== null) found.add(value.trim());
      }
      const srcset = el.getAttribute("srcset");
      if (srcset) srcset.split(",").forEach((part) => found.add(part.trim().split(/\s+/)[0]));
      const style = el.getAttribute("style");
      if (style) cssUrls(style).forEach((url) => found.add(url.trim()));
      if (el.tagName.toLowerCase() === "style") cssUrls(el.textContent).forEach((url) => found.add(url.trim()));
    }
    return [...found].filter((url) => !isLocal(url));
  }

  function summary() {
    const images = [...document.getElementsByTagName("img")];
    const svgs = [...document.getElementsByTagNameNS("http://www.w3.org/2000/svg", "svg")].filter(
      (svg) => !(svg.parentElement && svg.parentElement.closest("svg")));
    const root = document.documentElement;
    return {
      images: images.length,
      svgs: svgs.length,
      broken: images.filter((img) => !img.complete || img.naturalWidth === 0).map(
        (img) => img.getAttribute("alt") || short(img.getAttribute("src") || "<img> without src")),
      errors: errors.slice(),
      external: externalUrls(),
      scroll_width: root.scrollWidth,
      inner_width: window.innerWidth,
    };
  }
  function report() {
    if (!settled) return;
    let pre = document.getElementById(RESULT_ID);
    if (!pre) {
      pre = document.createElement("pre");
      pre.id = RESULT_ID;
      pre.setAttribute(OWN, "");
      pre.style.setProperty("display", "none", "important");
      (document.body || document.documentElement).appendChild(pre);
    }
    let text;
    try { text = JSON.stringify(summary()); } catch (e) { text = JSON.stringify({failed: describe(e)}); }
    pre.textContent = text;
  }

  window.addEventListener("load", () => {
    // Lazy images below the fold would never load in a check: make them eager and wait for them.
    const waiting = [...document.getElementsByTagName("img")].filter((img) => !img.complete).map((img) => {
      img.loading = "eager";
      return new Promise((done) => {
        img.addEventListener("load", done, {once: true});
        img.addEventListener("error", done, {once: true});
        setTimeout(done, 2000);
      });
    });
    Promise.all(waiting).then(() => setTimeout(() => { settled = true; report(); }, 100));
  });
})();
"""


class PageCheckError(MlplabError):
    """The page could not be checked: no browser, no such file, or Chromium failed."""


@dataclass(frozen=True)
class PageCheck:
    """What :func:`check_page` found on one page.

    Attributes
    ----------
    images : int
        Number of ``<img>`` elements.
    svgs : int
        Number of inline ``<svg>`` elements (an ``<svg>`` nested in another is not counted again).
    broken : tuple of str
        One entry per ``<img>`` that did not load (not complete, or ``naturalWidth == 0``): its
        ``alt``, or the first 60 characters of its ``src``.
    errors : tuple of str
        Console errors, uncaught exceptions, unhandled promise rejections and failed resource loads.
    external : tuple of str
        URLs in ``src``/``href`` (and ``srcset``, ``poster``, CSS ``url()``) that are not
        ``data:``, ``blob:``, ``about:``, ``javascript:`` or ``#fragment``: the page is not self-contained.
    screenshot : Path or None
        Where the screenshot was written, if one was asked for.
    text_overflow : bool
        The page scrolls sideways at the check's width (``scrollWidth > innerWidth``).
    checked : bool
        False when the checking script never reported (the page never finished loading, or
        replaced the document); ``errors`` then says so and :attr:`ok` is False.
    """

    images: int
    svgs: int
    broken: tuple[str, ...]
    errors: tuple[str, ...]
    external: tuple[str, ...]
    screenshot: Path | None
    text_overflow: bool
    checked: bool = True

    @property
    def ok(self) -> bool:
        """The page was checked and has no broken image, no error and no external URL."""
        return self.checked and not (self.broken or self.errors or self.external)

    def __str__(self) -> str:
        if not self.checked:
            verdict = "NOT CHECKED: " + (self.errors[0] if self.errors else "the check did not run")
        else:
            problems = [
                _count(len(items), noun)
                for items, noun in (
                    (self.broken, "broken image"),
                    (self.errors, "error"),
                    (self.external, "external URL"),
                )
                if items
            ]
            shown = f"{_count(self.images, 'image')}, {_count(self.svgs, 'svg')}"
            if self.text_overflow:
                shown += ", scrolls sideways"
            verdict = f"{'ok' if self.ok else 'NOT OK: ' + ', '.join(problems)} ({shown})"
        return verdict + (f"; screenshot {self.screenshot}" if self.screenshot else "")

    def details(self) -> list[str]:
        """One line per broken image, error and external URL (what :func:`main` prints)."""
        return (
            [f"broken image: {item}" for item in self.broken]
            + [f"error: {item}" for item in self.errors]
            + [f"external URL: {item}" for item in self.external]
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def find_browser() -> str | None:
    """The Chromium binary to use: ``$MLPLAB_CHROMIUM`` if set, else the first of :data:`BROWSER_NAMES` on PATH.

    Returns
    -------
    str or None
        The full path, or None when none is found (or ``$MLPLAB_CHROMIUM`` names no executable:
        a binary asked for by name is never silently replaced by another one).
    """
    wanted = os.environ.get(ENV_VAR)
    if wanted:
        return shutil.which(wanted)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _resolve_browser(browser: str | None) -> str:
    if browser is not None:
        found = shutil.which(browser)
        if found is None:
            raise PageCheckError(
                f"browser = {browser!r} is not an executable. Fix: pass the path of a Chromium binary, or {INSTALL_HINT}."
            )
        return found
    found = find_browser()
    if found is not None:
        return found
    if os.environ.get(ENV_VAR):
        raise PageCheckError(
            f"{ENV_VAR} = {os.environ[ENV_VAR]!r} is not an executable. "
            f"Fix: point {ENV_VAR} at a Chromium binary, unset it, or {INSTALL_HINT}."
        )
    raise PageCheckError(
        f"no Chromium found to check the page (looked for {', '.join(BROWSER_NAMES)} on PATH and ${ENV_VAR}). "
        f"Fix: {INSTALL_HINT}, or set {ENV_VAR} to a Chromium binary."
    )


def _instrument(page: bytes, script_url: str, base_url: str) -> bytes:
    """``page`` with the checking script (and a ``<base>``, unless it has one) as the first thing in its head.

    The bytes are handled as Latin-1, which maps every byte to one character and back, so the
    page's own encoding is kept whatever it is; the inserted tags are ASCII.
    """
    text = page.decode("latin-1")
    tags = f'<script src="{html_lib.escape(script_url)}" data-mlplab-check></script>'
    if not _BASE_RE.search(text):
        tags += f'<base href="{html_lib.escape(base_url)}" data-mlplab-check>'
    match = _HEAD_RE.search(text) or _HTML_RE.search(text) or _DOCTYPE_RE.search(text)
    at = match.end() if match else (3 if page.startswith(b"\xef\xbb\xbf") else 0)
    return (text[:at] + tags + text[at:]).encode("latin-1")


def _stderr_tail(stderr: str, lines: int = 12) -> str:
    """The last ``lines`` lines of Chromium's stderr that are not known noise (all of it if everything is)."""
    kept = [line for line in stderr.splitlines() if line.strip() and not _NOISE_RE.search(line)]
    if not kept:
        kept = [line for line in stderr.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(nothing on stderr)"


def console_errors(stderr: str) -> list[str]:
    """The console errors in Chromium's ``--enable-logging=stderr`` output.

    A line counts when Chromium logged it as ``ERROR`` (older versions log ``console.error`` so)
    or its message is an uncaught exception (``"Uncaught ..."``). Every line that is not a
    ``CONSOLE`` line is Chromium's own noise (D-Bus, GPU, sandbox, ...) and is ignored.
    """
    found = []
    for line in stderr.splitlines():
        match = _CONSOLE_RE.match(line.strip())
        if match and (match["level"] in ("ERROR", "FATAL") or match["message"].startswith("Uncaught")):
            source = re.sub(r" \((\d+)\)$", r":\1", match["source"])
            found.append(f"{match['message']} ({source})")
    return found


def _run(command: list[str], workdir: Path, timeout: float, what: str) -> tuple[str, str]:
    """Run ``command``; return its stdout and stderr, or raise :class:`PageCheckError` if it fails or times out.

    Output goes to files, not pipes, and the command gets a process group of its own: a timeout
    kills the whole group (Chromium's renderer and GPU processes too), and a helper process that
    outlives the browser cannot keep a pipe open and hang the wait.
    """
    out_path, err_path = workdir / f"{what}.out", workdir / f"{what}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, start_new_session=True
            )
        except OSError as exc:
            raise PageCheckError(f"cannot start {command[0]}: {exc.strerror or exc}. Fix: {INSTALL_HINT}.") from exc
        try:
            returncode = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)  # what is left of the browser, also after a clean exit
            process.wait()
    stdout = out_path.read_text("utf-8", errors="replace")
    stderr = err_path.read_text("utf-8", errors="replace")
    if timed_out:
        raise PageCheckError(
            f"Chromium ({what}) did not finish within {timeout:g} s. Its stderr ends with:\n{_stderr_tail(stderr)}\n"
            f"Fix: pass a larger timeout, or check that `{command[0]} --headless --dump-dom about:blank` runs here."
        )
    if returncode != 0:
        raise PageCheckError(
            f"Chromium ({what}) failed with exit status {returncode}. Its stderr ends with:\n{_stderr_tail(stderr)}\n"
            f"Fix: check that `{command[0]} --headless --dump-dom about:blank` runs here, or {INSTALL_HINT}."
        )
    return stdout, stderr


def _parse(stdout: str, stderr: str, rename: dict[str, str]) -> dict:
    """The checking script's summary from the dumped DOM, with Chromium's logged errors merged in."""

    def original(text: str) -> str:
        for copy, page in rename.items():
            text = text.replace(copy, page)
        return text

    logged = [original(error) for error in console_errors(stderr)]
    match = _RESULT_RE.search(stdout)
    if match is None:
        reason = "the checking script never reported: the page did not finish loading within the budget or replaced its document"
        return {"checked": False, "errors": [reason, *logged]}
    try:
        found = json.loads(html_lib.unescape(match.group(1)))
    except json.JSONDecodeError as exc:
        return {"checked": False, "errors": [f"the checking script's summary is not JSON ({exc})", *logged]}
    if "failed" in found:
        return {"checked": False, "errors": [f"the checking script failed: {found['failed']}", *logged]}
    errors = [original(error) for error in found["errors"]]
    # An uncaught exception is seen by the script and logged by Chromium: keep one of the two.
    errors += [error for error in logged if not any(seen.startswith(error.rsplit(" (", 1)[0]) for seen in errors)]
    found["errors"] = errors
    found["broken"] = [original(item) for item in found["broken"]]
    return found


def check_page(
    html: str | os.PathLike[str],
    screenshot: str | os.PathLike[str] | None = None,
    *,
    width: int = 1280,
    height: int = 900,
    browser: str | None = None,
    timeout: float = 60,
) -> PageCheck:
    """Open the page ``html`` in headless Chromium and report what a reader would see go wrong.

    Parameters
    ----------
    html : str or os.PathLike
        Path of the HTML file to check (not HTML text).
    screenshot : str or os.PathLike, optional
        Where to write a PNG screenshot of the first ``width`` x ``height`` pixels of the page
        (atomically: a reader never sees half a file). None: no screenshot (one Chromium run less).
    width, height : int
        The viewport in CSS pixels: :attr:`PageCheck.text_overflow` is measured at this width.
    browser : str, optional
        The Chromium binary; default :func:`find_browser`.
    timeout : float
        Seconds each Chromium run may take (the check is one run, the screenshot another).

    Returns
    -------
    PageCheck
        What was found; :attr:`PageCheck.ok` says whether the page passes.

    Raises
    ------
    PageCheckError
        (an :class:`~mlplab.errors.MlplabError`) when no browser is found, the file does not
        exist, or Chromium fails or times out (the message quotes the end of its stderr).
    ConfigError
        When ``width`` or ``height`` is not an integer in ``[1, 16384]``.
    """
    check_int("width", width, 1, 16384)
    check_int("height", height, 1, 16384)
    page = Path(html)
    if not page.is_file():
        what = "is a folder, not a file" if page.is_dir() else "does not exist"
        raise PageCheckError(
            f"the page {page} {what}. Fix: pass the path of an HTML file (`mlplab report` writes OUT/report.html)."
        )
    binary = _resolve_browser(browser)
    page = page.resolve()
    try:
        data = page.read_bytes()
    except OSError as exc:
        raise PageCheckError(
            f"cannot read the page {page}: {exc.strerror or exc}. Fix: check its permissions."
        ) from exc

    window = (f"--window-size={width},{height}", f"--screen-info={{0,0 {width}x{height}}}")
    with tempfile.TemporaryDirectory(prefix="mlplab-page-check-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        script = workdir / "mlplab-page-check.js"
        script.write_text(_CHECK_JS.replace("__RESULT_ID__", RESULT_ID), encoding="utf-8")
        copy = workdir / "page.html"
        copy.write_bytes(_instrument(data, script.as_uri(), page.parent.as_uri() + "/"))

        profile = workdir / "profile-check"
        stdout, stderr = _run(
            [binary, *_CHROMIUM_FLAGS, *window, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
            + ["--dump-dom", copy.as_uri()],
            workdir,
            timeout,
            "check",
        )
        found = _parse(stdout, stderr, {copy.as_uri(): page.as_uri(), str(copy): str(page)})

        shot = None
        if screenshot is not None:
            shot = Path(screenshot)
            with atomic_path(shot) as partial:
                profile = workdir / "profile-screenshot"
                _run(
                    [binary, *_CHROMIUM_FLAGS, *window, f"--user-data-dir={profile}", f"--screenshot={partial}"]
                    + [page.as_uri()],
                    workdir,
                    timeout,
                    "screenshot",
                )
                if partial.stat().st_size == 0:
                    raise PageCheckError(
                        f"Chromium wrote no screenshot to {shot}. Fix: check that "
                        f"`{binary} --headless --screenshot=shot.png about:blank` works here."
                    )

    return PageCheck(
        images=found.get("images", 0),
        svgs=found.get("svgs", 0),
        broken=tuple(found.get("broken", ())),
        errors=tuple(found["errors"]),
        external=tuple(found.get("external", ())),
        screenshot=shot,
        text_overflow=found.get("scroll_width", 0) > found.get("inner_width", width),
        checked=found.get("checked", True),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlplab.report.browser PAGE [--screenshot PNG] [--width N] [--height N]``.

    Prints the summary and one line per problem. Returns 0 if the page is ok, 1 if it is not,
    2 if it could not be checked at all (the message goes to stderr).
    """
    parser = argparse.ArgumentParser(
        prog="python -m mlplab.report.browser",
        description="Check a self-contained HTML page in headless Chromium: every image loads, no console "
        "error, JS error or failed load, no external URL. Exit status 0: ok, 1: problems, 2: not checked.",
    )
    parser.add_argument("page", type=Path, help="the HTML file (e.g. runs/report/report.html)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="also write a screenshot of the viewport")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default 1280)")
    parser.add_argument("--height", type=int, default=900, help="viewport height in CSS pixels (default 900)")
    args = parser.parse_args(argv)
    try:
        check = check_page(args.page, args.screenshot, width=args.width, height=args.height)
    except MlplabError as exc:
        print(f"mlplab: {exc}", file=sys.stderr)
        return 2
    print(f"{args.page}: {check}")
    for line in check.details():
        print(f"  {line}")
    return 0 if check.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
