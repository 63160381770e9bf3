"""A whole-site check in a real headless browser: every page of every language, once.

`phasebook build` proves that the site renders; it cannot see what a reader's browser sees. This
module serves a built site on localhost, opens every page of each language in headless Chromium and
records what would go wrong for a reader: JavaScript errors, requests that leave the machine (the
book must work offline), requests that fail or get an HTTP error (a missing asset, a 404 favicon),
and language switches that do not lead to the same page in the other language and back.

Used by `phasebook check-site` (after `make book`) and by the site tests on the fixture book.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from phasebook.errors import PhasebookError

# How the browser is started, as in tests/test_site.py: no sandbox (containers run as root), no GPU,
# and nothing of its own on the network (background updates, sync), so every request is the page's.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Launched here, the browser resolves no host name but localhost: a request leaving the machine is
# recorded and fails at once, and the check never waits on the network.
OFFLINE_ARG = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
# URL schemes that never leave the machine.
LOCAL_SCHEMES = ("data:", "blob:", "about:")
# Standalone figure pages (figures/ID/LANG/ID.html) are self-contained fragments with no theme and
# no language switch; a page elsewhere without one is a problem.
STANDALONE_DIRS = ("figures/",)
PAGE_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class SiteProblem:
    """One thing wrong on one page: `page` is its path under the site ("en/index.html"), `kind`
    one of console, pageerror, external, http, failed, load, lang-switch."""

    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


@dataclass
class SiteReport:
    """What `check_site` found: the pages checked per language, the problems, and the pages that
    have no language switch by design (standalone figure pages)."""

    site_dir: Path
    pages: dict[str, list[str]] = field(default_factory=dict)  # language -> pages checked ("en/x.html")
    problems: list[SiteProblem] = field(default_factory=list)
    without_switch: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when no page has any problem."""
        return not self.problems

    @property
    def checked(self) -> int:
        """How many pages were loaded, all languages together."""
        return sum(len(p) for p in self.pages.values())

    def problems_of(self, page: str) -> list[SiteProblem]:
        """The problems of one page, e.g. `report.problems_of("en/index.html")`."""
        return [p for p in self.problems if p.page == page]

    def summary(self, limit: int = 200) -> str:
        """A few lines for the terminal: counts, then each problem grouped by page (at most `limit`)."""
        per_lang = ", ".join(f"{lang} {len(pages)}" for lang, pages in self.pages.items())
        lines = [f"site check of {self.site_dir}: {self.checked} pages ({per_lang})"]
        if self.without_switch:
            lines.append(f"{len(self.without_switch)} standalone figure pages have no language switch "
                         "(expected)")
        if self.clean:
            lines.append("clean: no console or page errors, no requests leaving localhost, no failed "
                         "requests, every language switch leads to the same page and back")
            return "\n".join(lines)
        kinds: dict[str, int] = {}
        for p in self.problems:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        pages = sorted({p.page for p in self.problems})
        lines.append(f"{len(self.problems)} problems on {len(pages)} pages: "
                     + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        shown = 0
        for page in pages:
            lines.append(page)
            for p in self.problems_of(page):
                if shown == limit:
                    lines.append(f"  ... and {len(self.problems) - limit} more")
                    return "\n".join(lines)
                detail = p.detail if len(p.detail) <= 300 else p.detail[:297] + "..."
                lines.append(f"  {p.kind}: {detail}")
                shown += 1
        return "\n".join(lines)


def site_pages(site_dir: Path, lang: str) -> list[str]:
    """The pages of one language to check: every .html file under site_dir/LANG/, as "LANG/path",
    skipping Sphinx's own folders (_static, _sources, ...) and the empty genindex page."""
    root = site_dir / lang
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root)
        if any(part.startswith("_") for part in rel.parts[:-1]) or rel.as_posix() == "genindex.html":
            continue
        pages.append(f"{lang}/{rel.as_posix()}")
    return pages


def site_languages(site_dir: Path) -> list[str]:
    """The language folders of a built site: the subfolders holding an index.html."""
    return sorted(d.name for d in site_dir.iterdir()
                  if d.is_dir() and not d.name.startswith(("_", ".")) and (d / "index.html").is_file())


def find_chromium() -> str | None:
    """The system Chromium the tests use (`apt-get install chromium`), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def stderr_progress(message: str) -> None:
    """The default progress report: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


class _Server:
    """The site on 127.0.0.1 (a free port), quiet, remembering every response >= 400 it sends: the
    browser does not report all its requests to playwright (the automatic /favicon.ico is one)."""

    def __init__(self, root: Path):
        errors: list[tuple[str, int]] = []
        lock = threading.Lock()

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                if isinstance(code, int) and code >= 400:  # an int or an HTTPStatus
                    with lock:
                        errors.append((unquote(urlparse(self.path).path), int(code)))

        self._errors, self._lock = errors, lock
        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def errors(self) -> list[tuple[str, int]]:
        """The error responses sent since the last call (path, status)."""
        with self._lock:
            taken = list(self._errors)
            self._errors.clear()
        return taken

    def __enter__(self) -> _Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def _browser() -> Iterator[Any]:
    """Headless Chromium through playwright, with a clear error when either is missing."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise PhasebookError("the site check needs playwright: run `make install` (it is pinned in "
                             "lib/requirements.lock) or `.venv/bin/pip install playwright`.") from exc
    executable = find_chromium()
    with sync_playwright() as p:
        if executable is None and not Path(p.chromium.executable_path).is_file():
            raise PhasebookError("no Chromium found for the site check: `apt-get install chromium` "
                                 "(`make install` does it when run as root), or "
                                 "`.venv/bin/playwright install chromium`.")
        try:
            browser = p.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, OFFLINE_ARG])
        except PlaywrightError as exc:
            raise PhasebookError(f"Chromium ({executable or 'playwright'}) did not start: "
                                 f"{str(exc).splitlines()[0]}") from exc
        try:
            yield browser
        finally:
            browser.close()


class _Checker:
    """Loads pages one at a time, each in a fresh browser context (as a first-time reader sees it:
    no storage or cache left by the page before), and records their problems and switch links."""

    def __init__(self, browser: Any, server: _Server, report: SiteReport):
        self.browser, self.server, self.report = browser, server, report
        self.switches: dict[str, dict[str, str]] = {}  # page -> {language: URL path it links to}
        self.loaded: set[str] = set()

    def _local(self, url: str) -> bool:
        return url.startswith((self.server.url + "/", *LOCAL_SCHEMES)) or url == self.server.url

    def add(self, page: str, kind: str, detail: str) -> None:
        """Record a problem of `page` (once)."""
        problem = SiteProblem(page, kind, detail)
        if problem not in self.report.problems:
            self.report.problems.append(problem)

    def _path(self, url: str) -> str:
        return unquote(urlparse(url).path) if url.startswith(self.server.url) else url

    def load(self, page_path: str) -> None:
        """Open one page, wait until the network is quiet, record its problems and switch links."""
        add = functools.partial(self.add, page_path)
        self.loaded.add(page_path)
        http_paths: set[str] = set()

        def on_request(request: Any) -> None:
            if not self._local(request.url):
                add("external", request.url)

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                add("console", msg.text)

        def on_response(response: Any) -> None:
            if response.status >= 400 and self._local(response.url):
                http_paths.add(self._path(response.url))
                add("http", f"{response.status} {self._path(response.url)}")

        def on_failed(request: Any) -> None:
            if self._local(request.url):  # a request leaving localhost is reported as external
                add("failed", f"{self._path(request.url)} ({request.failure})")

        # No page.route(): intercepting requests stops Chromium from fetching favicons at all.
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.on("request", on_request)
            page.on("console", on_console)
            page.on("pageerror", lambda exc: add("pageerror", str(exc)))
            page.on("response", on_response)
            page.on("requestfailed", on_failed)
            page.goto(f"{self.server.url}/{page_path}", wait_until="networkidle", timeout=PAGE_TIMEOUT_MS)
            links = page.eval_on_selector_all(
                "a.pb-lang-switch", "els => els.map(e => [e.dataset.pbLang || '', e.href])")
            self.switches[page_path] = {lang: self._path(href) for lang, href in links}
            icons = page.eval_on_selector_all("link[rel~='icon']", "els => els.map(e => e.href)")
        except Exception as exc:  # a timeout, a crash: the page is reported, the check goes on
            add("load", str(exc).splitlines()[0])
            icons = None
        finally:
            context.close()
        # Responses the browser does not show playwright (its favicon requests) are seen by the
        # server; pages load one at a time, so they belong to this one.
        for path, status in self.server.errors():
            if path not in http_paths:
                http_paths.add(path)
                add("http", f"{status} {path}")
        # Chromium asks for a page's favicon (its <link rel=icon>, else /favicon.ico) only until
        # a request for it once failed, in any context of this browser: so check it from the page.
        if icons is not None:
            for url in icons or [f"{self.server.url}/favicon.ico"]:
                path = self._path(url)
                if url.startswith(self.server.url + "/") and path not in http_paths \
                        and not (self.report.site_dir / path.lstrip("/")).is_file():
                    http_paths.add(path)
                    add("http", f"404 {path} (the page's favicon)")
        # The console also says "Failed to load resource" (without the URL) for each HTTP error and
        # each request leaving localhost (blocked): those are reported with their URL already.
        if any(p.kind in ("http", "external", "failed") for p in self.report.problems_of(page_path)):
            self.report.problems = [p for p in self.report.problems
                                    if not (p.page == page_path and p.kind == "console"
                                            and p.detail.startswith("Failed to load resource"))]

    def switch_of(self, page_path: str) -> dict[str, str] | None:
        """The switch links of a page, loading it now if it was not checked (another language)."""
        if page_path not in self.loaded:
            self.load(page_path)
        return self.switches.get(page_path)


def check_site(site_dir: Path, languages: Sequence[str], *, browser: Any = None,
               progress: Callable[[str], None] | None = stderr_progress, every: int = 10) -> SiteReport:
    """Load every page of `languages` under `site_dir` in headless Chromium; report what is wrong.

    For each page: console errors and uncaught page errors; requests leaving localhost (anything
    but the local server, data:, blob: and about: URLs; a browser launched here resolves no other
    host, so nothing waits on the network);
    requests that failed or got an HTTP status >= 400; and the language round trip: the page's
    `a.pb-lang-switch` link for each other language must lead to the same page there, and that
    page's switch must lead back. Standalone figure pages have no switch and are listed in
    `without_switch`; any other page without one is a problem.

    `browser` is a running playwright Chromium to reuse (the tests share theirs); by default one is
    launched here. `progress` receives a line every `every` pages (None: silent).
    """
    site_dir = Path(site_dir)
    report = SiteReport(site_dir)
    for lang in languages:
        if not (site_dir / lang).is_dir():
            raise PhasebookError(f"no {lang}/ in {site_dir}: run `make book` first.")
        report.pages[lang] = site_pages(site_dir, lang)
    todo = [page for pages in report.pages.values() for page in pages]
    say = progress or (lambda message: None)
    every = max(1, every)
    with _Server(site_dir) as server, (_no_browser(browser) if browser is not None else _browser()) as b:
        checker = _Checker(b, server, report)
        for i, page in enumerate(todo, 1):
            checker.load(page)
            if i % every == 0 or i == len(todo):
                say(f"check-site: {i}/{len(todo)} pages loaded, {len(report.problems)} problems so far")
        for page in todo:
            _check_round_trip(checker, page, languages)
    order = {page: i for i, page in enumerate(todo)}
    report.problems.sort(key=lambda p: order.get(p.page, len(order)))
    return report


@contextmanager
def _no_browser(browser: Any) -> Iterator[Any]:
    """A browser given by the caller: used, not closed."""
    yield browser


def _check_round_trip(checker: _Checker, page: str, languages: Sequence[str]) -> None:
    """Record whether `page`'s language switch leads to the same page in each other language and back."""
    lang, rel = page.split("/", 1)
    links = checker.switches.get(page)
    if links is None:  # the page did not load: reported already
        return
    if not links:
        if rel.startswith(STANDALONE_DIRS):
            checker.report.without_switch.append(page)
        else:
            checker.add(page, "lang-switch", "the page has no language switch (a.pb-lang-switch)")
        return
    for other in dict.fromkeys([*[x for x in languages if x != lang], *links]):
        there = f"/{other}/{rel}"
        if other not in links:
            checker.add(page, "lang-switch", f"no switch to the {other} version ({there})")
            continue
        if links[other] != there:
            checker.add(page, "lang-switch", f"the {other} switch leads to {links[other]}, not {there}")
            continue
        if not (checker.report.site_dir / other / rel).is_file():
            checker.add(page, "lang-switch", f"the {other} switch leads to {there}, which does not exist")
            continue
        back = checker.switch_of(f"{other}/{rel}")
        if back is None:
            continue  # that page did not load: reported there
        if lang not in back:
            checker.add(page, "lang-switch", f"{there} has no switch back to {lang}")
        elif back[lang] != f"/{lang}/{rel}":
            checker.add(page, "lang-switch", f"{there} switches back to {back[lang]}, not /{page}")
