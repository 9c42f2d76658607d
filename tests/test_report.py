"""`newsevents report`: the numbers, the page, the page in a browser, the command line.

One small JSONL feed over three days (exact repeats across articles, two bad lines) is run
through the pipeline once; the report's numbers are checked against what that input must
give. A copy of that dataset with hand-written `near` duplicates and late counts added checks
the near-duplicate table and the late chart with non-zero data.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.report import CHART_IDS, CLUSTERS_ID, COLOR_EXACT, COLOR_LATE, main_report, render_html, report_data

from .conftest import query, run_pipeline, write_jsonl

CHROMIUM = Path("/usr/bin/chromium")

FEED = [
    # 2024-05-01: a1 has 2 blocks; a2 repeats a1's first block; a3 repeats it and adds one.
    {"article_id": "a1", "source": "alpha.example", "published_at": "2024-05-01T08:00:00Z",
     "text": "Flooding closed the northern bridge.\nSchools stay open."},
    {"article_id": "a2", "source": "beta.example", "published_at": "2024-05-01T09:00:00Z",
     "text": "Flooding closed the northern bridge."},
    {"article_id": "a3", "source": "gamma.example", "published_at": "2024-05-01T10:00:00Z",
     "text": "Flooding closed the northern bridge.\nThe mayor visited the shelter."},
    # 2024-05-02: b2 repeats b1's block and adds one.
    {"article_id": "b1", "source": "alpha.example", "published_at": "2024-05-02T07:00:00Z",
     "text": "Power returned to the eastern district."},
    {"article_id": "b2", "source": "beta.example", "published_at": "2024-05-02T08:00:00Z",
     "text": "Power returned to the eastern district.\nTrains run on a reduced timetable."},
    # 2024-05-03: one block.
    {"article_id": "c1", "source": "gamma.example", "published_at": "2024-05-03T12:00:00Z",
     "text": "The river level fell below the warning mark."},
    # Two refused lines.
    "this line is not json",
    {"article_id": "x1", "source": "alpha.example", "text": "No publication time here."},
]
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("report")
    write_jsonl(base / "input" / "feed.jsonl", FEED)
    out = base / "out"
    run_pipeline([base / "input"], out)
    return out


@pytest.fixture(scope="module")
def near_dataset(dataset, tmp_path_factory) -> Path:
    """The dataset plus 3 hand-written `near` duplicates on 2024-05-02 and 2 late updates on 2024-05-03."""
    from schemas.models import DUPLICATE_SCHEMA, QUALITY_SCHEMA

    out = tmp_path_factory.mktemp("near") / "out"
    shutil.copytree(dataset, out)
    ids = dict(query(out, "SELECT text, event_id FROM events WHERE event_date = DATE '2024-05-02'"))
    power, trains = ids["Power returned to the eastern district."], ids["Trains run on a reduced timetable."]
    near = pa.Table.from_pylist([
        {"event_id": power, "source": "delta.example", "article_id": "d1", "update_id": "d1",
         "text": "Power has returned to the eastern district on Thursday.", "method": "near", "similarity": 0.71},
        {"event_id": power, "source": "epsilon.example", "article_id": "e1", "update_id": "e1",
         "text": "POWER returned to the eastern district (Reuters)", "method": "near", "similarity": 0.9},
        {"event_id": trains, "source": "delta.example", "article_id": "d2", "update_id": "d2",
         "text": "Trains run on a reduced timetable today.", "method": "near", "similarity": 0.8},
    ], schema=DUPLICATE_SCHEMA)
    pq.write_table(near, out / "duplicates" / "event_date=2024-05-02" / "part-near.parquet")
    late = pa.Table.from_pylist([{"blocks_read": 0, "rejected": 0, "exact_duplicates": 0, "near_duplicates": 0,
                                  "redelivered": 0, "late": 2, "events_written": 0}], schema=QUALITY_SCHEMA)
    pq.write_table(late, out / "quality" / "event_date=2024-05-03" / "part-late.parquet")
    return out


# --------------------------------------------------------------------------- numbers


def test_report_data_totals_and_origin(dataset):
    d = report_data(str(dataset))
    assert d["totals"] == {"blocks_read": 11, "events": 6, "duplicates": 3, "exact_duplicates": 3,
                           "near_duplicates": 0, "rejects": 2, "redelivered": 0, "late": 0, "balanced": True}
    o = d["origin"]
    assert o["dataset"] == str(dataset.resolve())
    assert (o["first_day"], o["last_day"], o["days"]) == ("2024-05-01", "2024-05-03", 3)
    assert (o["sources"], o["articles"], o["files_with_rejects"]) == (3, 6, 1)
    assert o["written"] and o["written"].endswith("UTC")
    json.dumps(d)  # plain data only


def test_report_data_charts(dataset):
    d = report_data(str(dataset))
    epd = d["events_per_day"]
    assert epd["days"] == DAYS
    assert epd["series"] == [
        {"source": "alpha.example", "counts": [2, 1, 0]},
        {"source": "gamma.example", "counts": [1, 0, 1]},
        {"source": "beta.example", "counts": [0, 1, 0]},
    ]
    assert epd["other_sources"] == [] and epd["total"] == [3, 2, 1]

    assert d["duplicate_share"] == {
        "days": DAYS, "events": [3, 2, 1], "exact": [2, 1, 0], "near": [0, 0, 0],
        "exact_share": [0.4, 0.333333, 0.0], "near_share": [0.0, 0.0, 0.0],
    }

    c = d["clusters"]
    assert (c["method"], c["fallback"]) == ("exact", True)
    assert [(k["event_date"], k["kept_text"], k["kept_source"], k["kept_article_id"], k["copies"], k["mention_count"])
            for k in c["clusters"]] == [
        ("2024-05-01", "Flooding closed the northern bridge.", "alpha.example", "a1", 2, 3),
        ("2024-05-02", "Power returned to the eastern district.", "alpha.example", "b1", 1, 2),
    ]
    assert [(s["source"], s["article_id"], s["text"], s["similarity"]) for s in c["clusters"][0]["shown"]] == [
        ("beta.example", "a2", "Flooding closed the northern bridge.", 1.0),
        ("gamma.example", "a3", "Flooding closed the northern bridge.", 1.0),
    ]

    r = d["rejects_by_reason"]
    assert r["reasons"] == ["invalid_json", "missing_field:published_at"]
    assert r["counts"] == [1, 1]
    assert [(x["example_uri"].endswith("feed.jsonl"), x["example_line"]) for x in r["details"]] == [(True, 7), (True, 8)]
    assert r["details"][0]["example_raw"] == "this line is not json"

    assert d["late_per_day"] == {"days": DAYS, "late": [0, 0, 0], "all_zero": True}


def test_report_data_near_clusters_and_late(near_dataset):
    d = report_data(str(near_dataset))
    t = d["totals"]
    assert (t["duplicates"], t["exact_duplicates"], t["near_duplicates"], t["late"]) == (6, 3, 3, 2)
    assert t["balanced"] is False  # the added rows were never read as blocks
    ds = d["duplicate_share"]
    assert (ds["exact"], ds["near"]) == ([2, 1, 0], [0, 3, 0])
    assert (ds["exact_share"], ds["near_share"]) == ([0.4, 0.166667, 0.0], [0.0, 0.5, 0.0])
    c = d["clusters"]
    assert (c["method"], c["fallback"]) == ("near", False)
    assert [(k["kept_text"], k["copies"]) for k in c["clusters"]] == [
        ("Power returned to the eastern district.", 2), ("Trains run on a reduced timetable.", 1)]
    assert [(s["source"], s["similarity"]) for s in c["clusters"][0]["shown"]] == [
        ("delta.example", 0.71), ("epsilon.example", 0.9)]  # least similar first
    assert d["late_per_day"] == {"days": DAYS, "late": [0, 0, 2], "all_zero": False}


def test_report_data_groups_small_sources(dataset):
    d = report_data(str(dataset), top_sources=1)
    epd = d["events_per_day"]
    assert [s["source"] for s in epd["series"]] == ["alpha.example", "other (2 sources)"]
    assert epd["series"][1]["counts"] == [1, 1, 1]
    assert epd["other_sources"] == ["gamma.example", "beta.example"]


# --------------------------------------------------------------------------- page


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.urls, self.scripts, self.tables = set(), [], [], {}
        self._script, self._table, self._cell = None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href", "data", "action", "poster"):
            if a.get(key):
                self.urls.append((tag, a[key]))
        if tag == "script":
            self._script = []
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag == "td" and self._table:
            self._cell = []
        elif self._cell is not None and tag in ("div", "br"):
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._script is not None:
            self._script.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse_page(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    return p


def plotted(page: _Page, div_id: str) -> list[dict]:
    """The traces passed to Plotly.newPlot for the chart in `div_id`."""
    call = re.compile(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*')
    for script in page.scripts:
        m = call.search(script)
        if m:
            traces, _ = json.JSONDecoder().raw_decode(script, m.end())
            return traces
    raise AssertionError(f"no Plotly.newPlot call for {div_id}")


def test_html_contains_each_chart_with_its_numbers(dataset):
    d = report_data(str(dataset))
    page = parse_page(render_html(d))
    assert set(CHART_IDS.values()) | {CLUSTERS_ID} <= page.ids

    traces = plotted(page, CHART_IDS["events_per_day"])
    assert [(t["name"], t["x"], t["y"]) for t in traces] == [
        (s["source"], DAYS, s["counts"]) for s in d["events_per_day"]["series"]]

    traces = plotted(page, CHART_IDS["duplicate_share"])
    assert [(t["x"], t["y"]) for t in traces] == [(DAYS, [0.4, 0.333333, 0.0]), (DAYS, [0.0, 0.0, 0.0])]
    assert [c[0] for c in traces[0]["customdata"]] == [2, 1, 0]  # counts shown on hover

    traces = plotted(page, CHART_IDS["rejects_by_reason"])
    assert (traces[0]["y"], traces[0]["x"]) == (["invalid_json", "missing_field:published_at"], [1, 1])

    traces = plotted(page, CHART_IDS["late_per_day"])
    assert (traces[0]["x"], traces[0]["y"]) == (DAYS, [0, 0, 0])

    rows = page.tables[CLUSTERS_ID][1:]  # after the header row
    assert rows[0][0].startswith("2024-05-01 · alpha.example · 2 copies")
    assert rows[0][0].endswith("Flooding closed the northern bridge.")
    assert rows[0][1:] == ["Flooding closed the northern bridge.", "beta.example a2", "1.00"]
    assert rows[1] == ["Flooding closed the northern bridge.", "gamma.example a3", "1.00"]

    text = render_html(d)
    assert "No near duplicates in this dataset" in text
    assert "0 late updates on every day" in text
    assert "Accounting balances: 11 blocks read = 6 events + 3 duplicates + 2 rejects." in text


def test_html_is_self_contained(dataset):
    page_text = render_html(report_data(str(dataset)))
    page = parse_page(page_text)
    external = [(tag, url) for tag, url in page.urls if url.lower().startswith(("http:", "https:", "//"))]
    assert external == []
    assert "<link" not in page_text.lower()
    assert [url for tag, url in page.urls if tag == "script"] == []  # every script is inline
    assert len(re.findall(r"\* plotly\.js v\d", page_text)) == 1  # one copy of the bundle for all charts
    assert sum(len(s) for s in page.scripts) > 1_000_000  # the bundle itself is inline


def test_html_near_table_and_escaping(near_dataset):
    d = report_data(str(near_dataset))
    d["clusters"]["clusters"][0]["shown"][0]["source"] = "<script>alert(1)</script>"
    text = render_html(d)
    page = parse_page(text)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    rows = page.tables[CLUSTERS_ID][1:]
    assert rows[0][1:] == ["Power has returned to the eastern district on Thursday.",
                           "<script>alert(1)</script> d1", "0.71"]
    assert rows[1] == ["POWER returned to the eastern district (Reuters)", "epsilon.example e1", "0.90"]
    assert "Largest near-duplicate clusters" in text and "No near duplicates in this dataset" not in text
    # words that differ are marked; case and punctuation alone are not a difference
    assert "<ins>has</ins>" in text and "<ins>on Thursday.</ins>" in text and "<ins>POWER</ins>" not in text
    assert plotted(page, CHART_IDS["late_per_day"])[0]["y"] == [0, 0, 2]
    assert "Accounting does not balance" in text


def test_empty_dataset_renders(tmp_path):
    write_jsonl(tmp_path / "in" / "bad.jsonl", ["not json"])
    run_pipeline([tmp_path / "in"], tmp_path / "out")
    d = report_data(str(tmp_path / "out"))
    assert d["totals"]["events"] == 0 and d["totals"]["rejects"] == 1
    text = render_html(d)
    assert "No events in this dataset" in text and "No duplicates in this dataset" in text


# --------------------------------------------------------------------------- browser


def _screenshot(html_path: Path, png: Path, profile: Path) -> None:
    # The browser's own calls home (update and time checks, which the flags above them do not all
    # stop) get no name resolution and a dead local proxy: nothing leaves the machine, and the
    # page must draw without any network.
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
           f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,2000", "--hide-scrollbars",
           "--virtual-time-budget=5000", html_path.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and png.exists(), r.stderr[-2000:]


def _near(rgb, target, tol=12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, target))


def test_page_renders_in_headless_chromium(near_dataset, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"chromium not installed: {CHROMIUM} is absent (bash .ci/install-chromium.sh installs it)")
    from PIL import Image

    html_path = tmp_path / "report.html"
    assert main_report([str(near_dataset), "--html", str(html_path)]) == 0
    png = tmp_path / "shot.png"
    _screenshot(html_path, png, tmp_path / "profile")
    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 2000)
    colours = img.getcolors(maxcolors=1 << 24)  # [(pixel count, (r, g, b)), ...]
    total = img.size[0] * img.size[1]
    non_white = sum(n for n, rgb in colours if min(rgb) < 235) / total
    assert non_white > 0.05, f"screenshot looks blank: {non_white:.1%} non-white"
    assert len(colours) > 50, f"screenshot has only {len(colours)} colours"

    # Bars are drawn by plotly.js: their colours only appear when the embedded bundle ran.
    def pixels_like(hex_colour: str) -> int:
        target = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        return sum(n for n, rgb in colours if _near(rgb, target))

    assert pixels_like(COLOR_EXACT) > 2000, "no event / exact-duplicate bars: did plotly.js run?"
    assert pixels_like(COLOR_LATE) > 500, "no late-update bars: did plotly.js run?"


# --------------------------------------------------------------------------- command line


def test_main_report_writes_file(dataset, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main_report([str(dataset), "--html", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    o = capsys.readouterr()
    assert o.err == "" and o.out.startswith(f"newsevents: wrote {out}") and "6 events" in o.out
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


@pytest.mark.parametrize("case", ["missing_dir", "not_a_dataset", "no_html", "extra_arg", "bad_html_dir",
                                  "html_is_dir"])
def test_main_report_user_errors(case, dataset, tmp_path, capsys):
    argv = {
        "missing_dir": [str(tmp_path / "nope"), "--html", str(tmp_path / "r.html")],
        "not_a_dataset": [str(tmp_path), "--html", str(tmp_path / "r.html")],
        "no_html": [str(dataset)],
        "extra_arg": [str(dataset), "other", "--html", str(tmp_path / "r.html")],
        "bad_html_dir": [str(dataset), "--html", str(tmp_path / "no" / "such" / "r.html")],
        "html_is_dir": [str(dataset), "--html", str(tmp_path)],
    }[case]
    assert main_report(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("newsevents: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "r.html").exists()
