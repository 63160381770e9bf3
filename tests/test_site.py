"""The rendered site in a real headless Chromium: language switch, figures, math, offline."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM:
    if os.environ.get("CI") == "true":
        raise RuntimeError("chromium is missing: `make test` installs it when run as root")
    pytest.skip("chromium not installed (apt-get install chromium)", allow_module_level=True)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    root = built_book[0] / "build" / "site"
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.requests = []
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    foreign = [u for u in pg.requests
               if not u.startswith((site, "data:", "blob:", "about:"))]
    context.close()
    assert not foreign, f"requests left localhost: {foreign}"


def path_of(url: str) -> str:
    return unquote(urlparse(url).path)


def test_language_switch_round_trips(page, site):
    page.goto(f"{site}/en/experiments/tiny.html")
    page.click("a.pb-lang-switch[data-pb-lang='zh']")
    page.wait_for_url("**/zh/experiments/tiny.html")
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert "小实验" in page.inner_text("main")
    page.click("a.pb-lang-switch[data-pb-lang='en']")
    page.wait_for_url("**/en/experiments/tiny.html")
    assert path_of(page.url) == "/en/experiments/tiny.html"
    assert "Tiny experiment" in page.inner_text("main")


def test_root_page_picks_and_remembers_language(page, site):
    page.goto(f"{site}/index.html")
    page.click("a.pb-lang-choice[data-pb-lang='zh']")
    page.wait_for_url("**/zh/index.html")
    page.goto(f"{site}/index.html")
    page.wait_for_url("**/zh/index.html")
    page.goto(f"{site}/index.html?choose")
    assert page.locator("a.pb-lang-choice").count() == 2


def test_figure_with_cite_box_and_downloads(page, site):
    for lang, label in (("en", "Cite this figure"), ("zh", "引用此图")):
        page.goto(f"{site}/{lang}/index.html")
        figure = page.locator("figure#fig-tiny-errors")
        assert figure.count() == 1
        summary = figure.locator("details.pb-cite summary")
        assert label in summary.inner_text()
        summary.click()
        bibtex = figure.locator("pre.pb-bibtex")
        assert bibtex.is_visible() and "@misc{phasebook-tiny-errors-" in bibtex.inner_text()
        for ext in ("png", "svg", "pdf"):
            href = figure.locator(f"a[href$='.{ext}']").get_attribute("href")
            response = page.request.get(f"{site}/{lang}/{href}")
            assert response.ok, href


def test_interactive_figure_works_offline(page, site):
    page.goto(f"{site}/en/experiments/tiny.html")
    widget = page.locator("#tiny-widget")
    path = widget.locator("svg path[stroke='#d62728']")
    before = path.get_attribute("d")
    widget.locator("input[type=range]").fill("4")
    assert widget.locator("output").inner_text() == "4"
    assert path.get_attribute("d") != before


def test_math_renders_from_local_copy(page, site):
    for lang in ("en", "zh"):
        page.goto(f"{site}/{lang}/index.html")
        page.wait_for_selector("mjx-container", timeout=15000)
        assert page.locator("mjx-container").count() >= 2
    assert any("/_static/mathjax/" in u for u in page.requests)


def test_chinese_ui_and_search(page, site):
    page.goto(f"{site}/zh/experiments/tiny.html")  # the theme's own strings, translated
    assert page.get_attribute("input.form-control[name=q]", "placeholder") == "在本书中搜索……"
    assert "上一页" in page.inner_text("footer.prev-next-footer, .prev-next-area")
    assert "下一页" in page.inner_text("footer.prev-next-footer, .prev-next-area")
    page.goto(f"{site}/zh/search.html?q=内插")
    page.wait_for_selector("#search-results li", timeout=15000)
    assert "测试首页" in page.inner_text("#search-results")


def test_paper_network_opens_the_clicked_node_in_the_same_language(page, site):
    paper = "Tests 2026: A Fixture"
    for lang, home in (("en", "Fixture home"), ("zh", "测试首页")):
        page.goto(f"{site}/{lang}/network.html")
        page.wait_for_function("window.pbNetwork && window.pbNetwork.getPositions()['index']")
        legend = page.inner_text(".pb-network-legend")
        assert ("Experiment" if lang == "en" else "实验") in legend
        # The neighbours panel lists the home page's neighbours when the search finds it.
        page.fill(".pb-network-search", home[:4])
        panel = page.inner_text(".pb-network-panel")
        assert home in panel and paper in panel
        # Clicking the experiment's node opens its page in the page's language.
        # Freeze the layout and centre the node, so the click cannot land on a neighbour
        # still drifting under the cursor or on a node scrolled outside the canvas.
        page.locator("#pb-network-canvas").scroll_into_view_if_needed()
        x, y, under = page.evaluate("""() => {
            const n = window.pbNetwork;
            n.stopSimulation();
            n.focus('experiments/tiny', { scale: 1.5, animation: false });
            const d = n.canvasToDOM(n.getPositions(['experiments/tiny'])['experiments/tiny']);
            const r = document.querySelector('#pb-network-canvas').getBoundingClientRect();
            return [r.left + d.x, r.top + d.y, n.getNodeAt(d)]; }""")
        assert under == "experiments/tiny"
        page.mouse.click(x, y)
        page.wait_for_url(f"**/{lang}/experiments/tiny.html")


def test_every_page_lists_its_connected_pages_and_the_bibliography_its_citers(page, site):
    page.goto(f"{site}/zh/experiments/tiny.html")
    box = page.inner_text(".pb-connected")
    assert "相关页面" in box and "测试首页" in box and "链接到本页" in box
    page.click(".pb-connected a:has-text('测试首页')")
    page.wait_for_url("**/zh/index.html")
    page.goto(f"{site}/en/bibliography.html#paper-fixture2026")
    entry = page.locator("dl.pb-papers dd").first.inner_text()
    assert "Cited by" in entry and "Fixture home" in entry


def _pages(site_dir, lang):
    """The pages the site check should load: every .html under LANG/ but Sphinx's folders, genindex."""
    root = site_dir / lang
    return sorted(f"{lang}/{p.relative_to(root).as_posix()}" for p in root.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(root).parts)
                  and p.name != "genindex.html")


def test_every_page_loads_without_console_errors(browser, built_book):
    from phasebook.book.sitecheck import check_site

    site_dir = built_book[0] / "build" / "site"
    report = check_site(site_dir, ["en", "zh"], browser=browser, progress=None)
    assert report.clean, report.summary()
    for lang in ("en", "zh"):
        expected = _pages(site_dir, lang)
        assert f"{lang}/experiments/tiny.html" in expected and f"{lang}/network.html" in expected
        assert report.pages[lang] == expected
    # The standalone interactive figure: checked (no 404 favicon), and known to have no switch.
    assert report.without_switch == ["en/figures/tiny-errors/en/tiny-errors.html",
                                     "zh/figures/tiny-errors/zh/tiny-errors.html"]
    assert "clean" in report.summary()


def test_site_check_reports_each_problem_on_its_page(browser, built_book, tmp_path):
    from phasebook.book.sitecheck import check_site

    site_dir = tmp_path / "site"
    shutil.copytree(built_book[0] / "build" / "site", site_dir)
    keep = {"index.html", "experiments/tiny.html", "figures/tiny-errors/{lang}/tiny-errors.html"}
    for lang in ("en", "zh"):  # fewer pages, a faster check
        for rel in set(_pages(site_dir, lang)) - {f"{lang}/{k.format(lang=lang)}" for k in keep}:
            (site_dir / rel).unlink()
    index = site_dir / "en" / "index.html"
    index.write_text(index.read_text(encoding="utf-8").replace("</body>", (
        "<script>console.error('injected failure')</script><script>notDefinedAnywhere()</script>"
        "<img src='https://example.invalid/pixel.png'><img src='missing.png'></body>")), encoding="utf-8")
    tiny = site_dir / "en" / "experiments" / "tiny.html"
    html = tiny.read_text(encoding="utf-8")
    assert html.count('href="../../zh/experiments/tiny.html"') == 1
    tiny.write_text(html.replace('href="../../zh/experiments/tiny.html"', 'href="../../zh/index.html"'),
                    encoding="utf-8")
    figure = site_dir / "zh" / "figures" / "tiny-errors" / "zh" / "tiny-errors.html"
    figure.write_text(re.sub(r"<link rel='icon'[^>]*>", "", figure.read_text(encoding="utf-8")),
                      encoding="utf-8")

    report = check_site(site_dir, ["en", "zh"], browser=browser, progress=None)
    assert not report.clean
    found = {(p.page, p.kind): p.detail for p in report.problems}
    assert "injected failure" in found["en/index.html", "console"]
    assert "notDefinedAnywhere" in found["en/index.html", "pageerror"]
    assert found["en/index.html", "external"] == "https://example.invalid/pixel.png"
    assert found["en/index.html", "http"].startswith("404 /en/missing.png")
    assert found["en/experiments/tiny.html", "lang-switch"] == \
        "the zh switch leads to /zh/index.html, not /zh/experiments/tiny.html"
    assert found["zh/experiments/tiny.html", "lang-switch"] == \
        "/en/experiments/tiny.html switches back to /zh/index.html, not /zh/experiments/tiny.html"
    assert found["zh/figures/tiny-errors/zh/tiny-errors.html", "http"].startswith("404 /favicon.ico")
    assert {p.page for p in report.problems} == {
        "en/index.html", "en/experiments/tiny.html", "zh/experiments/tiny.html",
        "zh/figures/tiny-errors/zh/tiny-errors.html"}
    summary = report.summary()
    assert "en/index.html" in summary and "injected failure" in summary


def test_check_site_command_needs_a_built_site(tmp_path, capsys):
    from phasebook.cli import main

    assert main(["check-site", "--site", str(tmp_path / "nowhere")]) == 2
    assert "run `make book` first" in capsys.readouterr().err
