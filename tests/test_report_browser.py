"""The quarterly report as a person sees it: report.html rendered by headless Chromium (its
scripts run), then the rendered page is read: the production-feedback section, the alias
history and the training loss of every version must be on it. And the screenshot script
writes a real PNG of it. Without a browser these tests are skipped, saying so (`-rs`);
`.ci/run` installs Chromium from Debian's packages when it can."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO
from test_quarterly_report import LOGGED, MODEL, SERVED_110, build_quarter

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no headless browser found ({', '.join(BROWSERS)} not on PATH): "
                "install Chromium (Debian: apt-get install -y chromium; .ci/run does it as root)")


class Page(HTMLParser):
    """The rendered DOM as a list of (tag, attributes, text inside it), in document order."""

    def __init__(self):
        super().__init__()
        self.elements: list[list] = []
        self.open: list[list] = []

    def handle_starttag(self, tag, attrs):
        el = [tag, dict(attrs), ""]
        self.elements.append(el)
        if tag not in ("img", "br", "meta", "circle", "line", "polyline"):
            self.open.append(el)

    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i][0] == tag:
                del self.open[i:]
                break

    def handle_data(self, data):
        for el in self.open:
            el[2] += data

    def find(self, tag: str, **attrs) -> list[list]:
        return [e for e in self.elements if e[0] == tag and all(e[1].get(k) == v for k, v in attrs.items())]

    def section(self, heading_id: str, level: str = "h2") -> list[list]:
        """The elements after the heading with this id, up to the next heading of its level or above."""
        stop = {"h1", "h2"} if level == "h2" else {"h1", "h2", level}
        start = next(i for i, e in enumerate(self.elements) if e[0] == level and e[1].get("id") == heading_id)
        end = next((i for i, e in enumerate(self.elements[start + 1:], start + 1) if e[0] in stop), None)
        return self.elements[start + 1:end]


def rendered(page: Path, tmp_path: Path) -> Page:
    """The DOM once Chromium loaded the page and ran its scripts."""
    done = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-2000:]
    dom = Page()
    dom.feed(done.stdout)
    return dom


@pytest.fixture(scope="module")
def quarter(tmp_path_factory) -> Path:
    browser()  # skip before building anything
    return build_quarter(tmp_path_factory.mktemp("browser") / "ws")


def _rows(elements: list[list]) -> list[list[str]]:
    rows, row = [], None
    for tag, _, text in elements:
        if tag == "tr":
            row = []
            rows.append(row)
        elif tag in ("td", "th") and row is not None:
            row.append(text.strip())
    return rows


def test_the_rendered_page_shows_feedback_alias_history_and_every_versions_loss(quarter, tmp_path):
    dom = rendered(quarter / "reports" / MODEL / "report.html", tmp_path)
    feedback = dom.section("production-feedback")
    per_version = {r[0]: r for r in _rows(dom.section("per-version", "h3"))[1:]}
    assert sorted(per_version) == ["1.0.0", "1.1.0"]
    assert per_version["1.0.0"][1] == "400" and per_version["1.1.0"][1] == str(len(SERVED_110))
    headings = [e[2] for e in feedback if e[0] == "h3"]
    assert headings == ["Rating distribution", "Per version", "Per version and domain",
                        "Domains users complained about most"]
    history = _rows(dom.section("alias-history"))
    assert [r[3] for r in history[1:]] == ["clt cycle", "clt cycle", "alice", "alice", "clt cycle", "bob"]
    assert history[-1][1:] == ["rollback", "champion: 1.1.0 → 1.0.0", "bob", "users complained about hazmat_id answers"]
    # drawn by the page's script: present only in the rendered DOM, one group per version
    series = {g[1]["data-version"]: g for g in dom.find("g", **{"class": "loss-series"})}
    assert {v: int(g[1]["data-points"]) for v, g in series.items()} == LOGGED
    assert series["1.2.0"][2].strip() == "1.2.0 (1 logged)"  # the version with one loss is there
    circles = [e for e in dom.section("training-loss") if e[0] == "circle"]
    assert len(circles) == sum(LOGGED.values())
    loss_rows = {r[0]: r for r in _rows(dom.section("training-loss")) if r and r[0] in LOGGED}
    assert {v: int(r[1]) for v, r in loss_rows.items()} == LOGGED


def test_a_stale_report_says_so_at_the_top_of_the_rendered_page(quarter, tmp_path):
    from cl_toolkit.pipeline.quarterly_report import mark_stale

    ws = tmp_path / "ws"
    shutil.copytree(quarter, ws)
    mark_stale(ws, MODEL, "champion 1.0.0 -> 1.1.0 (promote) after it was built")
    dom = rendered(ws / "reports" / MODEL / "report.html", tmp_path)
    body = dom.find("body")[0]
    first = dom.elements[dom.elements.index(body) + 1]
    assert first[1].get("id") == "stale" and first[2] == "Stale: champion 1.0.0 -> 1.1.0 (promote) after it was built"


def test_the_screenshot_script_writes_the_rendered_report_as_a_png(quarter, tmp_path):
    from PIL import Image

    browser()
    out = tmp_path / "shots" / "report.png"
    done = subprocess.run([str(REPO / "scripts" / "report_screenshot.sh"), str(quarter), MODEL, str(out)],
                          capture_output=True, text=True, timeout=180, env={"PATH": os.environ["PATH"],
                                                                            "WIDTH": "1000", "HEIGHT": "1500"})
    assert done.returncode == 0, done.stderr
    assert f"wrote {out} (1000x1500)" in done.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1000, 1500)
        low, high = im.convert("L").getextrema()
        assert low < 60 and high > 200  # text on a white page, not a blank one
    missing = subprocess.run([str(REPO / "scripts" / "report_screenshot.sh"), str(tmp_path / "nothing"), MODEL, str(out)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no report at" in missing.stderr
