"""`cxr-atlas view` in a real browser: Debian's Chromium, headless, driven by Playwright (never
`playwright install`), against the served demo atlas and against a static export.

The map itself is WebGPU with `shader-f16`, which headless Chromium's software adapter lacks; the
test serves a test-only copy of the frontend with f16 buffers made f32 (tests/browser/), so the
points render and are counted. Everything else is the shipped frontend."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "browser"))

pytestmark = pytest.mark.workflow
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # WebGPU on SwiftShader with GPU-style compositing (not --disable-gpu)
    "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
    "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]  # fmt: skip
POINTS = r"([0-9,]+) / ([0-9,]+) points"


def _need_browser():
    import importlib.util

    missing = [name for name, ok in (
        ("chromium", os.path.exists(CHROMIUM)),
        ("playwright", importlib.util.find_spec("playwright") is not None),
        ("embedding-atlas", importlib.util.find_spec("embedding_atlas") is not None),
    ) if not ok]  # fmt: skip
    if missing:
        if os.environ.get("CXR_ATLAS_REQUIRE_BROWSER"):
            pytest.fail(f"browser test needs {missing} (CI installs them)")
        pytest.skip(f"needs {missing}")


def _free_port() -> int:
    for port in range(5071, 5088):  # Chrome refuses some ports (5060); these work
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 5071-5087")


@pytest.fixture(scope="module")
def atlas(demo_run):
    """The shared 300-image demo run's atlas (conftest.py): the viewer only reads it."""
    return demo_run / "results/atlas/atlas.parquet"


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    _need_browser()
    from make_f32_static import make_f32_static

    return make_f32_static(tmp_path_factory.mktemp("static") / "f32")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """The lateral films selected in the served atlas, as the app exported them (format ->
    file), filled by test_served_atlas_in_a_real_browser: its server and page, not new ones."""
    return {"dir": tmp_path_factory.mktemp("exports")}


EXPORT_FORMATS = ("parquet", "csv", "json", "jsonl")


def _export_selection(page, fmt: str, out: Path) -> Path:
    """Export the current selection from the selection bar as `fmt`; the downloaded file.
    The server writes `SELECT * FROM dataset WHERE <the selection's predicate>`."""
    popup = page.locator('button[title="Export Selection"]')
    if not page.locator('button[title="Export the selected points"]:visible').count():
        popup.click()  # opens the export popup; it stays open between exports
    formats = page.locator("select:visible").filter(has=page.locator("""option[value='"csv"']"""))
    formats.select_option(value=f'"{fmt}"')  # the options' values are JSON strings
    with page.expect_download(timeout=60_000) as download:
        page.locator('button[title="Export the selected points"]:visible').click()
    path = out / f"lateral.{fmt}"
    download.value.save_as(str(path))
    return path


def _serving(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _serve(cmd: list[str], url: str):
    """A server started in its own session and stopped with everything it started when the
    block ends, pass or fail: no test leaves a server behind."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not _serving(url):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
            if time.time() > deadline:
                raise TimeoutError(url)
            time.sleep(0.5)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextlib.contextmanager
def _page(url: str, wait_map: bool = True):
    """A loaded page (the "N / N points" text shown, and the maps drawn if `wait_map`), and the
    list of requests it made to hosts other than 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    external: list[str] = []

    def record(request) -> None:
        if request.url.startswith("http") and urlparse(request.url).hostname != "127.0.0.1":
            external.append(request.url)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("request", record)
        page.goto(url)
        _wait_text(page, POINTS, 180_000)
        if wait_map:
            page.wait_for_function(
                "() => [...document.querySelectorAll('canvas')].some(c => c.width > 400)",
                timeout=180_000,
            )
            time.sleep(8)  # SwiftShader is slow: let the points and density finish
        try:
            yield page, external
        finally:
            browser.close()


def _wait_text(page, pattern: str, timeout: int = 30_000) -> None:
    js = pattern.replace("/", "\\/")
    page.wait_for_function(f"() => /{js}/.test(document.body.innerText)", timeout=timeout)


def _count_plot_bar(page, field: str, value: str):
    """The row for `value` in `field`'s count plot: the side panel is the right-most column, and
    the row sits under the plot's title (table cells with the same texts lie further left)."""

    title = _panel_title(page, field)
    rows = [(el, b) for el, b in _boxes(page, value)
            if b and abs(b["x"] - title["x"]) < 40 and b["y"] > title["y"]]  # fmt: skip
    assert rows, f"no row {value!r} under the {field!r} count plot"
    return min(rows, key=lambda r: r[1]["y"])[0]


def _boxes(page, text: str):
    loc = page.get_by_text(text, exact=True)
    return [(loc.nth(i), loc.nth(i).bounding_box()) for i in range(loc.count())]


def _panel_title(page, field: str) -> dict:
    """The box of the right-most on-screen element reading exactly `field`: a chart title in the
    side panel when that chart exists (the table's header of that name lies further left, or
    scrolled off to the right)."""
    width = page.viewport_size["width"]
    return max((b for _, b in _boxes(page, field) if b and b["x"] < width), key=lambda b: b["x"])


def _text(page) -> str:
    return page.evaluate("() => document.body.innerText")


def _coloured_pixels(png: Path) -> int:
    """Pixels whose red and blue differ clearly: map points (the page itself is grey/white)."""
    from PIL import Image

    im = np.asarray(Image.open(png).convert("RGB")).astype(int)[60:900, 40:1180]
    return int((np.abs(im[..., 0] - im[..., 2]) > 60).sum())


def test_view_command_is_offline_and_local(atlas):
    from cxratlas.atlas.viewer import viewer_command

    cmd = viewer_command(atlas)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    # every computed input is passed, so the viewer computes and downloads nothing
    for flag, col in (("--x", "x_pixels_32"), ("--neighbors", "neighbors_pixels_32"),
                      ("--pagerank", "pagerank_pixels_32"), ("--image", "thumbnail")):  # fmt: skip
        assert cmd[cmd.index(flag) + 1] == col
    assert cmd[cmd.index("--state") + 1].endswith("state.json") and "--labels" not in cmd
    # one model alone: its own state and its cluster names on its map
    one = viewer_command(atlas, model="pixels_64_pca")
    assert one[one.index("--x") + 1] == "x_pixels_64_pca"
    assert one[one.index("--state") + 1].endswith("views/pixels_64_pca.state.json")
    labels = pd.read_parquet(one[one.index("--labels") + 1])
    names = pd.read_parquet(atlas, columns=["cluster_label_pixels_64_pca"]).iloc[:, 0]
    assert set(labels["text"]) == set(names) - {"noise"}
    cli = [sys.executable, "-m", "cxratlas.cli", "view", str(atlas), "--model", "nope"]
    out = subprocess.run(cli, capture_output=True, text=True)
    assert out.returncode == 2 and "holds no model 'nope'" in out.stderr
    cli = [sys.executable, "-m", "cxratlas.cli", "view", str(atlas.parent / "x.parquet")]
    out = subprocess.run(cli, capture_output=True, text=True)
    assert out.returncode == 2 and "x.parquet: atlas not found" in out.stderr


def test_served_atlas_in_a_real_browser(atlas, static, exports, tmp_path):
    frame = pd.read_parquet(atlas, columns=["view_position", "manufacturer"])
    n = len(frame)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "cxratlas.cli", "view", str(atlas), "--port", str(port),
           "--static", str(static)]  # fmt: skip
    shot = tmp_path / "atlas.png"
    with _serve(cmd, url), _page(url) as (page, external):
        assert re.search(POINTS, _text(page)).groups() == (f"{n}",) * 2
        canvases = "() => [...document.querySelectorAll('canvas')].filter(c => c.width > 400)"
        assert page.evaluate(canvases + ".length") == 2  # a drawing view per model
        assert "WebGPU is unavailable" not in _text(page)
        for value in ("PA", "AP", "LATERAL", *frame["manufacturer"].unique()):
            assert value in _text(page)  # the count plots list the planted categories
        side = _panel_title(page, "view_position")["x"]
        for chart in ("cluster_label_pixels_32", "findings", "agreement", "outlier_pixels_64_pca"):
            assert abs(_panel_title(page, chart)["x"] - side) < 40, chart  # in the panel
        page.screenshot(path=str(shot))
        lateral = int((frame["view_position"] == "LATERAL").sum())
        _count_plot_bar(page, "view_position", "LATERAL").click()
        _wait_text(page, f"{lateral} / {n} points")  # the selection filters every view
        for fmt in EXPORT_FORMATS:  # the selection bar's "Export Selection", every format
            exports[fmt] = _export_selection(page, fmt, exports["dir"])
    assert external == []  # nothing beyond localhost
    assert _coloured_pixels(shot) > 500, "the maps drew no points"
    if os.environ.get("CXR_ATLAS_SCREENSHOT"):
        shutil.copy(shot, os.environ["CXR_ATLAS_SCREENSHOT"])
    assert not _serving(url)  # the server is gone with the test


def test_a_selection_exported_from_the_atlas_comes_back_as_a_subgroup(
    repo, demo_run, atlas, exports, tmp_path
):
    """The round trip: the lateral films selected and exported in the browser (above), named
    under `subgroups`; the plan adds only the subgroups' jobs, and their members are exactly
    the selected images, whatever the export's format."""
    from workflow_runs import job_stats, snakemake

    from cxratlas.analysis.subgroup_members import SubgroupSpec, read_selection

    _need_browser()
    assert set(EXPORT_FORMATS) <= set(exports), "the export in the browser test did not run"
    frame = pd.read_parquet(atlas, columns=["image_id", "view_position"])
    selected = set(frame.loc[frame["view_position"] == "LATERAL", "image_id"])
    for fmt in EXPORT_FORMATS:
        ids = read_selection(SubgroupSpec(fmt, file=str(exports[fmt])))
        assert set(ids) == selected and len(ids) == len(selected), fmt
    run = tmp_path / "run"  # this test adds to a run: a copy of the shared one
    shutil.copytree(demo_run, run, symlinks=True)
    extra = run / "subgroups.yaml"

    def with_subgroups(subgroups: dict, *args: str):
        extra.write_text(yaml.safe_dump({"subgroups": subgroups}))
        return snakemake(repo, run, "--configfile", str(run / "test.yaml"), str(extra), *args)

    subgroups = {"lateral": str(exports["parquet"]), "lateral_csv": str(exports["csv"])}
    planned = job_stats(with_subgroups(subgroups, "-n").stdout)
    # no embed, no reduce: the subgroups' jobs, and the summary for its "Your subgroups" lines
    assert planned == {"subgroup": 2, "subgroups_overview": 1, "summary": 1, "all": 1}
    with_subgroups(subgroups)
    summary = (run / "results/summary/summary.md").read_text()
    section = summary.split("## Your subgroups", 1)[1].split("\n## ", 1)[0]
    for name in subgroups:
        assert f"- **{name}** ({len(selected)} images): gathered in pixels_" in section
    for name in subgroups:
        members = pd.read_parquet(run / f"results/analysis/subgroups/{name}/members.parquet")
        assert set(members["image_id"]) == selected and members["in_atlas"].all()
        placement = pd.read_parquet(run / f"results/analysis/subgroups/{name}/placement.parquet")
        assert (placement["members"] == len(selected)).all()
    subgroups["lateral_json"] = str(exports["json"])  # one more: only its job, none other's
    planned = job_stats(with_subgroups(subgroups, "-n").stdout)
    assert planned == {"subgroup": 1, "subgroups_overview": 1, "summary": 1, "all": 1}


def test_one_model_view_shows_its_cluster_names(atlas, static, tmp_path):
    """`--model`: one map, and the clusters' names where a reader looks: in the cluster count
    plot and drawn on the map from our labels table (not the viewer's automatic labels)."""
    names = set(pd.read_parquet(atlas, columns=["cluster_label_pixels_64_pca"]).iloc[:, 0])
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "cxratlas.cli", "view", str(atlas), "--port", str(port),
           "--static", str(static), "--model", "pixels_64_pca"]  # fmt: skip
    with _serve(cmd, url), _page(url) as (page, external):
        canvases = "() => [...document.querySelectorAll('canvas')].filter(c => c.width > 400)"
        assert page.evaluate(canvases + ".length") == 1
        assert _panel_title(page, "cluster_label_pixels_64_pca")  # the names' count plot
        drawn = "() => [...document.querySelectorAll('svg text')].map(t => t.textContent)"
        page.wait_for_function(drawn + ".length > 0", timeout=60_000)
        on_map = set(page.evaluate(drawn))
        assert on_map & names and on_map <= names, (on_map, names)  # ours, not automatic
        page.screenshot(path=str(tmp_path / "one.png"))
        if os.environ.get("CXR_ATLAS_SCREENSHOT"):
            shutil.copy(tmp_path / "one.png", os.environ["CXR_ATLAS_SCREENSHOT"] + ".one.png")
    assert external == []


def test_static_export_opens_from_a_plain_file_server(atlas, static, tmp_path):
    out = tmp_path / "bundle"
    cmd = [sys.executable, "-m", "cxratlas.cli", "view", str(atlas), "--export", str(out),
           "--static", str(static)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    rows = len(pd.read_parquet(atlas, columns=["image_id"]))
    assert (out / "index.html").exists()
    assert len(pd.read_parquet(out / "data/dataset.parquet")) == rows
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
              "--directory", str(out)]  # fmt: skip
    with _serve(server, url), _page(url, wait_map=False) as (page, external):
        assert re.search(POINTS, _text(page)).groups() == (f"{rows}",) * 2
    assert external == []
    assert not _serving(url)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_view_command_stops_the_server(atlas, sig):
    """`cxr-atlas view` is the server (exec), so a signal to the pid the user started ends the
    serving: no orphan goes on serving every row on 127.0.0.1."""
    if not shutil.which("embedding-atlas", path=os.path.dirname(sys.executable)):
        if os.environ.get("CXR_ATLAS_REQUIRE_BROWSER"):
            pytest.fail("embedding-atlas is not installed (make setup installs it)")
        pytest.skip("needs embedding-atlas")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "cxratlas.cli", "view", str(atlas), "--port", str(port)]
    with _serve(cmd, url) as proc:
        os.kill(proc.pid, sig)  # only the pid, as a user's Ctrl-C or `kill` would
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while _serving(url) and time.time() < deadline:
            time.sleep(0.2)
        assert not _serving(url), "the server outlived the command"
