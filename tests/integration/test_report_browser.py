"""The report.html a real run leaves renders in a real browser: headless Chromium (Debian's
``chromium`` package) loads it from disk, every image in it decodes, the layout fits the window,
and a screenshot of it is taken.

A small MNIST run goes through the whole local stack (the state machine, the handlers, Score's
report writer), so this is the page a user of ``stepml demo`` opens.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stepml.local.runner import run_trigger
from tests.integration.stacks import local_stack

WIDTH = 1280
#: Set on <body> once the page has loaded: what the browser made of each image, and the layout.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    var box = img.getBoundingClientRect();
    return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight, shownWidth: box.width};
  });
  document.body.setAttribute("data-probe", JSON.stringify({
    images: images, scrollWidth: document.documentElement.scrollWidth,
    scrollHeight: document.documentElement.scrollHeight, title: document.title}));
});
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: this test renders the report in a real browser. "
                    "Install it with `apt-get install -y chromium` (Debian) and run again.", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser() -> str:
    """Chromium's path, looked up before the run is made: a missing browser fails at once."""
    return chromium()


def run_chromium(browser: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={WIDTH},4000", *extra, page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "HOME": str(profile)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def report_page(synthetic_files, tmp_path_factory) -> Path:
    """report.html of a small MLP run on synthetic MNIST, fetched from the local stack."""
    out = tmp_path_factory.mktemp("runs")
    trigger = {"version": "1", "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "data/mnist/"},
               "model": {"type": "MULTICLASS", "algorithm": "mlp", "parameters": {"epochs": 3}}}
    with local_stack(synthetic_files) as stack:
        outcome = run_trigger(stack, json.dumps(trigger).encode(), "browser.json", out, say=lambda _: None)
    assert outcome.status == "SUCCEEDED", outcome.failure
    page = outcome.out_dir / "report" / "report.html"
    assert page.is_file()
    assert outcome.report["outputs"]["report_html"].endswith("/report/report.html")
    return page


def test_the_run_lists_the_page_and_every_chart_that_applies(report_page):
    outputs = json.loads((report_page.parent / "report.json").read_text())["outputs"]
    charts = sorted(Path(key).stem for key in outputs["report_charts"])
    assert charts == sorted(["confusion_matrix", "per_class", "confidence", "misclassified", "training_curves"])
    for name in charts:
        assert (report_page.parent / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_the_page_renders_in_chromium_with_every_image_loaded(browser, report_page, tmp_path):
    probed = tmp_path / "probed.html"            # a copy of the page with the probe script added
    probed.write_text(report_page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                      encoding="utf-8")
    dom = run_chromium(browser, probed, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the page never finished loading: " + dom[:2000]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["title"].startswith("stepml report: ")
    assert len(probe["images"]) == 5
    for image in probe["images"]:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image
        assert image["shownWidth"] > 300, image         # displayed, at a readable size
    assert probe["scrollWidth"] <= WIDTH               # nothing spills sideways
    assert probe["scrollHeight"] > 2000                # the header, tables and five charts

    screenshot = tmp_path / "report.png"
    run_chromium(browser, report_page, tmp_path / "profile-shot", f"--screenshot={screenshot}")
    from PIL import Image

    image = Image.open(screenshot)
    image.load()
    assert image.size == (WIDTH, 4000)
    colours = image.convert("RGB").resize((320, 1000)).getcolors(maxcolors=1_000_000)
    assert len(colours) > 200, "the screenshot is (nearly) blank"
    keep = os.environ.get("STEPML_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(screenshot, keep)
