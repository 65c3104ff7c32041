"""The HTML report: loss shapes are the right functions, the page is self-contained, and it renders in headless
Chromium (Debian's ``chromium``) with no console errors and plots that are not blank."""

from __future__ import annotations

import base64
import io
import json
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evo.archive import Archive, Candidate
from evo.config import load_config, save_config
from evo.leaderboard import main as leaderboard_main
from evo.report_plots import SHAPE_POINTS, SHAPE_SPAN, loss_shape, margin_grid, sequence_loss, shapes
from tests.evo.chromium import DevTools, chromium
from tests.evo.graphs import traced_graph
from trainer.losses import get_loss_spec

BETA = 0.1
HEADER = (
    "def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
    "    x = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)\n"
)
HINGE = HEADER + "    return torch.relu(1 - beta * x)\n"
SHIFTED = HEADER + "    return -F.logsigmoid(beta * x - 0.5)\n"
EXPONENTIAL = HEADER + "    return torch.exp(-beta * x)\n"
SCALAR = HEADER + "    return (-F.logsigmoid(beta * x)).mean()\n"  # breaks the (batch,) contract
CONSTANT = HEADER + "    return torch.zeros_like(x)\n"
HOSTILE_NAME = 'exp<img src="x">'


def _candidate(graph: str | None, name: str = "c", code: str = "") -> Candidate:
    return Candidate(id=7, generation=1, proposer="llm", status="done", name=name, code=code, graph=graph)


def test_dpo_shape_is_its_closed_form():
    margins = margin_grid(BETA)
    assert margins[0] == pytest.approx(-SHAPE_SPAN / BETA) and margins[-1] == pytest.approx(SHAPE_SPAN / BETA)
    values, slopes = loss_shape(get_loss_spec("sigmoid").build(), margins, BETA)
    x = margins.double()
    assert torch.allclose(torch.from_numpy(values), F.softplus(-BETA * x), atol=1e-5)
    assert torch.allclose(torch.from_numpy(slopes), -BETA * torch.sigmoid(-BETA * x), atol=1e-6)


def test_the_stored_graph_is_drawn_never_the_code(sandbox_pool):
    margins = margin_grid(BETA)
    tampered = "import os\ndef loss_fn(a, b, c, d, beta):\n    os.system('false')\n    return a\n"
    values, slopes = loss_shape(
        sequence_loss(_candidate(traced_graph(HINGE, sandbox_pool), code=tampered)), margins, BETA
    )
    x = margins.double()
    assert torch.allclose(torch.from_numpy(values), torch.relu(1 - BETA * x), atol=1e-5)
    inside = (BETA * x < 0.99).numpy()
    outside = (BETA * x > 1.01).numpy()
    assert slopes[inside] == pytest.approx(-BETA) and slopes[outside] == pytest.approx(0.0)


def test_a_loss_that_cannot_be_drawn_is_reported_not_fatal(sandbox_pool):
    candidates = [
        _candidate(traced_graph(SCALAR, sandbox_pool), name="scalar"),
        _candidate(traced_graph(SHIFTED, sandbox_pool), name="shifted"),
        _candidate(traced_graph(CONSTANT, sandbox_pool), name="flat"),
        _candidate(None, name="old", code=HINGE),
        _candidate('{"format": "pickle"}', name="forged"),
    ]
    curves, errors = shapes(candidates, BETA)
    assert [c.label for c in curves] == ["DPO", "#7 shifted", "#7 flat"]
    assert list(errors) == ["#7 scalar", "#7 old", "#7 forged"]
    assert f"batch of shape ({SHAPE_POINTS},)" in errors["#7 scalar"]
    assert "without a graph" in errors["#7 old"] and errors["#7 forged"].startswith("GraphError")
    assert not curves[2].values.any() and not curves[2].slopes.any()


# ---- the page -------------------------------------------------------------------------------------------------
def _build_run(run_dir: Path, pool) -> None:
    save_config(load_config(preset="tiny"), run_dir / "config.yaml")
    archive = Archive(run_dir / "archive.sqlite")

    def done(
        generation: int,
        proposer: str,
        name: str,
        code: str,
        per_item: list[int],
        loss: str | None = None,
        losses: tuple[float, ...] = (0.69, 0.5, 0.4),
    ) -> int:
        score = sum(per_item) / len(per_item)
        details = {"per_item": {str(i): v for i, v in enumerate(per_item)}}
        graph = None if loss else traced_graph(code, pool)
        return archive.add(
            generation,
            proposer,
            "done",
            name=name,
            code=code,
            loss=loss,
            graph=graph,
            fitness=score,
            stderr=0.05,
            n=len(per_item),
            metrics={"losses": list(losses), "fitness_details": details},
            timings={"train_s": 12.0, "eval_s": 3.0, "total_s": 15.0},
            llm_cost=0.002,
        )

    done(0, "baseline", "dpo", get_loss_spec("sigmoid").source, [1, 0, 1, 0], loss="sigmoid")
    done(1, "llm", "hinge_margin", HINGE, [1, 1, 1, 0], losses=(1.0, 0.7, 0.2))
    done(1, "symbolic", "shifted_logistic", SHIFTED, [0, 0, 1, 0], losses=(0.9, 0.8, 0.75))
    archive.add(
        1,
        "llm",
        "invalid",
        name="wrong_way",
        code=HEADER + "    return beta * x\n",
        reason="[direction] the gradient lowers the chosen log-ratio",
    )
    done(2, "llm", HOSTILE_NAME, EXPONENTIAL, [1, 1, 1, 1], losses=(1.0, 0.6, 0.3))
    archive.add(
        2,
        "symbolic",
        "duplicate",
        name="hinge_again",
        code=HINGE,
        duplicate_of=2,
        reason="behaves like candidate 2 (hinge_margin)",
    )
    archive.add(
        2, "llm", "failed", name="diverges", code=EXPONENTIAL, reason="training diverged: loss is nan"
    )
    archive.record_isolation_missing(("seccomp",))
    archive.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory, sandbox_pool) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    _build_run(run_dir, sandbox_pool)
    out = run_dir / "report.html"
    assert leaderboard_main([str(run_dir), "--html", str(out)]) == 0
    return out


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset", "poster")]
        if tag == "tr":
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _blank(image: Image.Image) -> str | None:
    """Why an image looks blank, or None when it shows a plot (ink and many colours)."""
    rgb = image.convert("RGB")
    pixels = rgb.width * rgb.height
    ink = sum(count for count, colour in rgb.getcolors(pixels) if min(colour) < 230)
    colours = len(rgb.getcolors(pixels))
    if ink < 0.02 * pixels or colours < 50:
        return f"{rgb.width}x{rgb.height}: {ink / pixels:.1%} ink, {colours} colours"
    return None


def test_the_page_is_self_contained_and_complete(report: Path):
    text = report.read_text()
    page = _Page()
    page.feed(text)
    assert len(page.images) == 4  # fitness by generation, loss shapes, training curves, status breakdown
    assert all(link.startswith("data:") for link in page.links), page.links  # nothing to fetch
    assert "Content-Security-Policy" in text and "<script" not in text
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.format == "PNG" and _blank(image) is None, _blank(image)
    leaderboard = [r for r in page.rows if len(r) == 10 and r[0].isdigit()]
    assert [r[2] for r in leaderboard] == [HOSTILE_NAME, "hinge_margin", "dpo", "shifted_logistic"]
    hinge = leaderboard[1]
    assert hinge[3].startswith("0.7500") and hinge[4].startswith("+0.2500 ±")  # paired delta vs DPO
    statuses = {r[0]: r[1] for r in page.rows if len(r) == 2}
    assert statuses == {
        "status": "candidates",
        "done": "4",
        "invalid": "1",
        "duplicate": "1",
        "failed": "1",
        "all": "7",
    }
    assert "&lt;img src=&quot;x&quot;&gt;" in text  # archived text is escaped, never markup
    assert (
        '<div class="card">sandbox<b>weaker: without seccomp</b></div>' in text
    )  # the run's isolation record
    reasons = " ".join(r[-1] for r in page.rows)
    assert "the gradient lowers the chosen log-ratio" in reasons and "duplicate of #2" in reasons


def test_the_leaderboard_says_when_the_sandbox_ran_weaker(report: Path, capsys):
    assert leaderboard_main([str(report.parent)]) == 0
    out = capsys.readouterr().out
    assert "sandbox: validated WITHOUT seccomp: weaker isolation than designed" in out
    assert leaderboard_main([str(report.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sandbox_isolation_missing"] == ["seccomp"]


# ---- in a browser ---------------------------------------------------------------------------------------------
IMAGES_JS = """JSON.stringify({
  height: document.documentElement.scrollHeight,
  images: Array.from(document.images).map(i => {
    const r = i.getBoundingClientRect();
    return {alt: i.alt, complete: i.complete, width: i.naturalWidth, x: r.left + scrollX, y: r.top + scrollY,
            w: r.width, h: r.height};
  }),
  headings: Array.from(document.querySelectorAll("h2")).map(h => h.textContent),
})"""


def test_the_page_renders_in_headless_chromium(report: Path, tmp_path: Path):
    browser = DevTools(chromium(), tmp_path / "profile", tmp_path / "chromium.log")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        metrics = {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        browser.call("Page.navigate", {"url": report.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        found = json.loads(
            browser.call(
                "Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True}, session=session
            )["result"]["value"]
        )
        browser.call(
            "Emulation.setDeviceMetricsOverride", {**metrics, "height": found["height"]}, session=session
        )
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        time.sleep(0.2)  # let late console messages arrive before the errors are read
        browser.call("Runtime.evaluate", {"expression": "1"}, session=session)
        errors = browser.errors()
        requests = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
    finally:
        browser.close()
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(base64.b64decode(shot))
    assert errors == [], errors
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert found["headings"] == [
        "Leaderboard",
        "Best fitness per generation",
        "Loss shapes",
        "Training curves",
        "Status breakdown",
    ]
    page = Image.open(screenshot)
    assert page.height == found["height"] and _blank(page) is None, _blank(page)
    assert len(found["images"]) == 4
    for image in found["images"]:  # each plot decoded, laid out, and drawn in the screenshot
        assert image["complete"] and image["width"] > 0 and image["w"] > 300 and image["h"] > 100, image
        box = (
            round(image["x"]),
            round(image["y"]),
            round(image["x"] + image["w"]),
            round(image["y"] + image["h"]),
        )
        assert _blank(page.crop(box)) is None, (image["alt"], _blank(page.crop(box)))
