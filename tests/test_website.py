"""The Jupyter Book website: builds offline with warnings as errors (lessons executed in full mode),
every page of the table of contents exists, nothing is loaded from a CDN, and in a real browser every
lesson page loads with its figures and no missing local resource."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from browser import ROOT, artifacts, chromium_page, free_port, server

pytestmark = pytest.mark.book
SITE = ROOT / "_build" / "site" / "_build" / "html"


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


@pytest.fixture(scope="session")
def site() -> Path:
    """Build the website once per session with `make book` (the README's command): full mode."""
    if os.environ.get("CNNVIZ_SITE_PREBUILT") != "1":
        env = {k: v for k, v in os.environ.items() if k not in ("CNNVIZ_QUICK", "BOOK_QUICK")}
        log = artifacts("book") / "build.log"
        with open(log, "wb") as fh:
            r = subprocess.run(["make", "-s", "book", f"BIN={Path(sys.executable).parent}"], cwd=ROOT, env=env,
                               stdout=fh, stderr=subprocess.STDOUT)
        assert r.returncode == 0, f"make book failed; see {log}:\n" + log.read_text()[-4000:]
    assert (SITE / "index.html").exists()
    return SITE


def test_toc_lists_every_lesson_in_order():
    lessons = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    listed = [f for f in toc_files() if re.match(r"\d\d_", f)]
    assert listed == lessons, f"_toc.yml lists {listed}, notebooks/ has {lessons}"


def test_the_website_shows_the_full_course(site):
    """Every lesson page was executed in full mode: its first cell printed `quick mode: False`."""
    quick = [f for f in toc_files() if re.match(r"\d\d_", f) and "quick mode: False" not in (site / f"{f}.html").read_text()]
    assert not quick, f"pages not executed in full mode (or not saying so): {quick}"


def test_every_page_exists(site):
    missing = [f for f in toc_files() if not (site / f"{f}.html").exists()]
    assert not missing, f"pages missing from the built site: {missing}"


def test_no_cdn_resources(site):
    bad = []
    for page in site.glob("*.html"):
        for m in re.finditer(r'<(script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text()):
            bad.append(f"{page.name}: {m.group(2)}")
    assert not bad, "pages load resources from outside the site:\n" + "\n".join(bad[:20])


def test_lesson_pages_have_executed_figures(site):
    problems = []
    for f in toc_files():
        if re.match(r"\d\d_", f):
            html = (site / f"{f}.html").read_text()
            imgs = re.findall(r'<img[^>]+src="(_images/[^"]+\.png)"', html)
            if not imgs:
                problems.append(f"{f}.html has no figure: was the notebook executed, with the inline backend?")
            problems += [f"{f}.html: {src} is (nearly) empty" for src in imgs if (site / src).stat().st_size <= 1000]
    assert not problems, "\n".join(problems)


def test_numbers_in_the_prose_are_glued_from_the_page(site):
    """Every {glue:text} role was filled from a cell of its page: no role is left as text."""
    left = []
    for f in toc_files():
        text = re.sub(r"<[^>]+>", "", (site / f"{f}.html").read_text())
        left += [f"{f}.html: ...{m.group(0)}..." for m in re.finditer(r".{0,40}\{glue[^}]*\}.{0,40}", text)]
    assert not left, "unrendered glue roles:\n" + "\n".join(left[:20])


def test_solutions_are_collapsed_and_tasks_visible(site):
    import jupytext

    problems = []
    for f in toc_files():
        if not re.match(r"\d\d_", f):
            continue
        cells = jupytext.read(ROOT / "notebooks" / f"{f}.md").cells
        n = sum("solution" in c.metadata.get("tags", []) for c in cells)
        html = (site / f"{f}.html").read_text()
        toggles = len(re.findall(r"<details[^>]*>\s*<summary[^>]*>.*?Show solution", html, flags=re.S))
        if toggles != n:
            problems.append(f"{f}.html: {toggles} collapsed solutions, the lesson has {n}")
    assert not problems, "\n".join(problems)


ATLAS = {"atlas_early": "early", "atlas_early_mid": "early_mid"}


def test_toc_lists_the_atlas_pages():
    pages = sorted(p.stem for p in (ROOT / "notebooks").glob("atlas_*.md"))
    assert pages == sorted(ATLAS) and all(p in toc_files() for p in pages)


def test_atlas_pages_have_one_card_per_unit(site):
    """Each atlas page: a card per unit of its layer (Lite0's block2: 24, block3: 40), each with its anchor,
    its visualization and its patches, executed in full mode."""
    import torch

    from cnnviz_helpers import course_model
    from cnnviz_helpers.hooks import capture

    model = course_model("efficientnet_lite0")
    problems = []
    for page, layer in ATLAS.items():
        html = (site / f"{page}.html").read_text()
        ids = re.findall(r'<div class="card" id="([^"]+)"', html)
        with capture(model, [layer]) as rec, torch.no_grad():
            model(torch.rand(1, 3, 224, 224))
        channels = rec[layer].shape[1]
        if ids != [f"{layer}-unit-{u}" for u in range(channels)]:
            problems.append(f"{page}.html: {len(ids)} cards, {layer} has {channels} units")
        if html.count("data:image/jpeg;base64,") != 2 * channels:
            problems.append(f"{page}.html: not two images per card")
        if "quick mode: False" not in html:
            problems.append(f"{page}.html was not executed in full mode")
    assert not problems, "\n".join(problems)


@pytest.mark.browser
def test_an_atlas_link_opens_its_unit(site, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    with server(cmd, base + "/index.html"), chromium_page(tmp_path) as page:
        page.goto(f"{base}/atlas_early_mid.html#early_mid-unit-17", wait_until="networkidle")
        box = page.eval_on_selector("#early_mid-unit-17", "e => { const r = e.getBoundingClientRect(); "
                                    "return [r.top, r.bottom, window.innerHeight, e.matches(':target')]; }")
        top, bottom, height, target = box
        assert target and 0 <= top < height, f"unit 17's card is not scrolled into view: {box}"
        sizes = page.eval_on_selector_all("#early_mid-unit-17 img", "els => els.map(e => e.naturalWidth)")
        assert len(sizes) == 2 and all(w > 0 for w in sizes), sizes
        page.screenshot(path=str(artifacts("website") / "atlas_unit_17.png"), full_page=False)


@pytest.mark.browser
def test_every_page_loads_in_a_browser(site, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    shots = artifacts("website")
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    with server(cmd, base + "/index.html"), chromium_page(tmp_path) as page:
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
        for f in toc_files():
            resp = page.goto(f"{base}/{f}.html", wait_until="networkidle")
            assert resp is not None and resp.ok, f"{f}.html: {resp.status if resp else 'no response'}"
            assert page.title(), f"{f}.html has no title"
            sizes = page.eval_on_selector_all("main img, article img", "els => els.map(e => [e.src, e.naturalWidth])")
            if re.match(r"\d\d_", f):
                assert sizes, f"{f}.html shows no image"
            empty = [s for s, w in sizes if w == 0]
            assert not empty, f"{f}.html: images that did not load: {empty}"
            page.screenshot(path=str(shots / f"{f}.png"), full_page=False)
        assert not failed, "local resources missing:\n" + "\n".join(failed)
        assert not page.external_requests, "pages tried to reach outside the site:\n" + "\n".join(page.external_requests)
