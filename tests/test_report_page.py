"""The report's landing page as a reader sees it: `snakemake --report` of the shared demo run,
opened in Debian's Chromium (headless, driven by Playwright) at 1400x900. What is measured is
where the browser puts things, not what the HTML holds: Snakemake's report centres its content
box, which once pushed the top of a long landing page out of reach (snakemake/snakemake#2782)."""

from __future__ import annotations

import os

import pytest
from workflow_runs import snakemake

pytestmark = pytest.mark.workflow
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 900}


def _need_browser():
    import importlib.util

    missing = [name for name, ok in (("chromium", os.path.exists(CHROMIUM)),
                                     ("playwright", importlib.util.find_spec("playwright")
                                      is not None)) if not ok]  # fmt: skip
    if missing:
        if os.environ.get("CXR_ATLAS_REQUIRE_BROWSER"):
            pytest.fail(f"the report test needs {missing} (CI installs them)")
        pytest.skip(f"needs {missing}")


@pytest.fixture(scope="module")
def report(repo, demo_run, tmp_path_factory):
    _need_browser()
    out = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(repo, demo_run, "--report", str(out))
    return out


def _inside(box, height=VIEWPORT["height"]) -> bool:
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_the_landing_page_opens_at_its_top_and_scrolls_to_its_last_lead(report, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(report.as_uri())
            first = page.locator("h2", has_text="What this study found")
            first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "landing.png"))
            # at load, untouched: the first heading is on screen, and so is the comparison's
            assert _inside(first.bounding_box()), first.bounding_box()
            compare = page.locator("h2", has_text="How the models compare")
            assert compare.bounding_box()["y"] < 900 * 1.5  # the comparison comes next
            headings = page.locator("h2").all_inner_texts()
            assert (
                headings.index("How the models compare")
                < headings.index("The models one by one")
                < [h.startswith("Leads") for h in headings].index(True)
            )
            # every part can be scrolled to: the last lead, then the last term
            for last in (page.locator("ol > li").last, page.locator("#terms + ul > li").last):
                last.scroll_into_view_if_needed()
                box = last.bounding_box()
                assert box["height"] > 0 and box["y"] < VIEWPORT["height"], box
                assert box["y"] + min(box["height"], 200) > 0, box
            # the comparison table is shown whole, not clipped by the text column
            table = page.locator("table").first
            table.scroll_into_view_if_needed()
            width = page.evaluate("() => document.querySelector('table').scrollWidth")
            assert table.bounding_box()["width"] >= width - 1
        finally:
            browser.close()
