"""`newsevents report DIR --html report.html`: one self-contained HTML page of charts.

Reads the dataset at DIR with DuckDB (`pipelines.sql.connect`) and draws, with plotly (the
plotly.js bundle is embedded once, so the page opens with no network):

1. events per day by source (stacked bars; sources past the 10 largest grouped as "other"),
2. duplicate share per day: duplicates / (events + duplicates), exact and near stacked,
3. the largest near-duplicate clusters, kept text and each copy side by side with the words
   that differ highlighted (the largest exact clusters, said so, when there is no near one),
4. rejects by reason, with one example input per reason,
5. late updates per day (`quality.late`: updates that came after their day's window closed,
   also kept as `late` rejects), drawn even when every day is 0 (always so in a batch run),

under a header with the totals (blocks read, events, duplicates, rejects), whether they add
up (every block read is one events, duplicates or rejects row), and where the data came from.

Three plain functions: `report_data(root)` returns the numbers every chart is drawn from (a
JSON-able dict); `render_html(data)` turns that dict into the page (no I/O, same dict in, same
page out); `write_report(root, html_path)` does both and writes the file by rename, so a
reader never sees half a page. `report_command(root, html_path)` is the `newsevents report`
command (parsed in `pipelines.cli`; `main_report(argv)` runs it from an argument list): exit 0,
or 2 with one line on stderr (`newsevents: error: ...`) for a missing or unreadable dataset,
bad arguments or an unwritable report path.

Example::

    newsevents run --input sample/input --output out
    newsevents report out --html report.html
"""
from __future__ import annotations

import datetime as dt
import difflib
import html
import os
import re
import sys
from typing import Any

TOP_SOURCES = 10
TOP_CLUSTERS = 5
COPIES_PER_CLUSTER = 6
REJECT_EXAMPLE_CHARS = 160

# Chart container ids (the tests find each chart by its id).
CHART_IDS = {
    "events_per_day": "chart-events-per-day",
    "duplicate_share": "chart-duplicate-share",
    "rejects_by_reason": "chart-rejects-by-reason",
    "late_per_day": "chart-late-per-day",
}
CLUSTERS_ID = "table-clusters"

# Sources take Tableau 10 (plotly.colors.qualitative.T10); the other charts use colours of
# their own so that no colour means two things on the page.
COLOR_OTHER = "#cbd5e1"
COLOR_EXACT = "#6366f1"
COLOR_NEAR = "#db2777"
COLOR_REJECT = "#dc2626"
COLOR_LATE = "#f59e0b"


# --------------------------------------------------------------------------- data


def _rows(con, sql: str, params: list | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def _iso(d: dt.date | None) -> str | None:
    return None if d is None else d.isoformat()


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _dataset_written(root: str) -> str | None:
    """UTC time of the newest Parquet file of the dataset (local datasets only)."""
    if "://" in root:
        return None
    newest = None
    for table in ("events", "duplicates", "rejects", "quality"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, table)):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
            for name in filenames:
                if name.endswith(".parquet"):
                    m = os.path.getmtime(os.path.join(dirpath, name))
                    newest = m if newest is None or m > newest else newest
    if newest is None:
        return None
    return dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report_data(root: str, *, top_sources: int = TOP_SOURCES, top_clusters: int = TOP_CLUSTERS,
                copies_per_cluster: int = COPIES_PER_CLUSTER) -> dict[str, Any]:
    """The numbers every chart of the report is drawn from, computed with DuckDB.

    Raises `pipelines.sql.SqlError` when `root` is not a readable dataset. Days are ISO
    strings (`YYYY-MM-DD`), sorted; every per-day list is aligned with `days`, which holds
    every day that has events, duplicates or a quality row (not the days in between).
    """
    from pipelines.sql import connect

    con = connect(root)
    try:
        return _report_data(con, root, top_sources, top_clusters, copies_per_cluster)
    finally:
        con.close()


def _report_data(con, root: str, top_sources: int, top_clusters: int, copies_per_cluster: int) -> dict:
    days = [_iso(r[0]) for r in _rows(con, """
        SELECT event_date FROM events UNION SELECT event_date FROM duplicates
        UNION SELECT event_date FROM quality ORDER BY 1""") if r[0] is not None]
    index = {d: i for i, d in enumerate(days)}

    def per_day(rows, value=1) -> list:
        out = [0] * len(days)
        for r in rows:
            if r[0] is not None:
                out[index[_iso(r[0])]] = int(r[value])
        return out

    # Totals and accounting.
    (n_events,) = _rows(con, "SELECT count(*) FROM events")[0]
    n_exact, n_near = _rows(con, "SELECT count(*) FILTER (method = 'exact'), count(*) FILTER (method = 'near')"
                                 " FROM duplicates")[0]
    (n_dups,) = _rows(con, "SELECT count(*) FROM duplicates")[0]
    (n_rejects,) = _rows(con, "SELECT count(*) FROM rejects")[0]
    blocks_read, q_late, q_redelivered = _rows(con, "SELECT coalesce(sum(blocks_read), 0), coalesce(sum(late), 0),"
                                                    " coalesce(sum(redelivered), 0) FROM quality")[0]
    totals = {
        "blocks_read": int(blocks_read),
        "events": int(n_events),
        "duplicates": int(n_dups),
        "exact_duplicates": int(n_exact),
        "near_duplicates": int(n_near),
        "rejects": int(n_rejects),
        "redelivered": int(q_redelivered),
        "late": int(q_late),
    }
    totals["balanced"] = totals["blocks_read"] == (totals["events"] + totals["duplicates"] + totals["rejects"]
                                                   + totals["redelivered"])

    # Where the data came from.
    n_sources, n_articles = _rows(con, """
        SELECT count(DISTINCT source), count(DISTINCT article_id) FROM (
            SELECT source, article_id FROM events UNION ALL SELECT source, article_id FROM duplicates)""")[0]
    (n_reject_files,) = _rows(con, "SELECT count(DISTINCT source_uri) FROM rejects")[0]
    origin = {
        "dataset": root if "://" in root else os.path.abspath(root),
        "written": _dataset_written(root),
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "days": len(days),
        "sources": int(n_sources),
        "articles": int(n_articles),
        "files_with_rejects": int(n_reject_files),
    }

    # 1. Events per day by source.
    ranked = _rows(con, "SELECT source, count(*) AS n FROM events GROUP BY source ORDER BY n DESC, source")
    shown = [r[0] for r in ranked[:top_sources]]
    others = [r[0] for r in ranked[top_sources:]]
    series = []
    for source in shown:
        rows = _rows(con, "SELECT event_date, count(*) FROM events WHERE source = ? GROUP BY 1", [source])
        series.append({"source": source, "counts": per_day(rows)})
    if others:
        rows = _rows(con, f"SELECT event_date, count(*) FROM events WHERE source NOT IN "
                          f"({', '.join('?' * len(shown))}) GROUP BY 1", shown)
        series.append({"source": f"other ({len(others)} sources)", "counts": per_day(rows), "other": True})
    events_per_day = {
        "days": days,
        "series": series,
        "other_sources": others,
        "total": per_day(_rows(con, "SELECT event_date, count(*) FROM events GROUP BY 1")),
    }

    # 2. Duplicate share per day.
    ev = per_day(_rows(con, "SELECT event_date, count(*) FROM events GROUP BY 1"))
    ex = per_day(_rows(con, "SELECT event_date, count(*) FROM duplicates WHERE method = 'exact' GROUP BY 1"))
    ne = per_day(_rows(con, "SELECT event_date, count(*) FROM duplicates WHERE method = 'near' GROUP BY 1"))
    duplicate_share = {
        "days": days,
        "events": ev,
        "exact": ex,
        "near": ne,
        "exact_share": [_share(x, e + x + n) for e, x, n in zip(ev, ex, ne)],
        "near_share": [_share(n, e + x + n) for e, x, n in zip(ev, ex, ne)],
    }

    # 3. Largest clusters: near when there are any, else exact.
    method = "near" if n_near else "exact"
    clusters = []
    for event_id, event_date, copies in _rows(con, """
            SELECT event_id, event_date, count(*) AS copies FROM duplicates WHERE method = ?
            GROUP BY 1, 2 ORDER BY copies DESC, event_date, event_id LIMIT ?""", [method, top_clusters]):
        kept = _rows(con, "SELECT text, source, article_id, mention_count FROM events"
                          " WHERE event_id = ? AND event_date = ? LIMIT 1", [event_id, event_date])
        k_text, k_source, k_article, k_mentions = kept[0] if kept else (None, None, None, None)
        rows = _rows(con, """
            SELECT text, source, article_id, similarity FROM duplicates
            WHERE event_id = ? AND event_date = ? AND method = ?
            ORDER BY similarity, source, article_id, update_id, text LIMIT ?""",
                     [event_id, event_date, method, copies_per_cluster])
        clusters.append({
            "event_id": event_id,
            "event_date": _iso(event_date),
            "kept_text": k_text,
            "kept_source": k_source,
            "kept_article_id": k_article,
            "mention_count": None if k_mentions is None else int(k_mentions),
            "copies": int(copies),
            "shown": [{"text": t, "source": s, "article_id": a, "similarity": round(float(sim), 4)}
                      for t, s, a, sim in rows],
        })
    cluster_data = {"method": method, "fallback": method == "exact", "clusters": clusters}

    # 4. Rejects by reason, one example each.
    reasons = []
    for reason, n, stages, uri, line, raw in _rows(con, """
            WITH r AS (
                SELECT *, row_number() OVER (PARTITION BY reason ORDER BY source_uri, line NULLS FIRST) AS k
                FROM rejects)
            SELECT reason, count(*) AS n, string_agg(DISTINCT stage, ', ' ORDER BY stage),
                   any_value(source_uri) FILTER (k = 1), any_value(line) FILTER (k = 1), any_value(raw) FILTER (k = 1)
            FROM r GROUP BY reason ORDER BY n DESC, reason"""):
        raw = raw or ""
        reasons.append({
            "reason": reason,
            "count": int(n),
            "stages": stages,
            "example_uri": uri,
            "example_line": None if line is None else int(line),
            "example_raw": raw[:REJECT_EXAMPLE_CHARS] + ("…" if len(raw) > REJECT_EXAMPLE_CHARS else ""),
        })
    rejects_by_reason = {
        "reasons": [r["reason"] for r in reasons],
        "counts": [r["count"] for r in reasons],
        "details": reasons,
    }

    # 5. Late updates per day.
    late = per_day(_rows(con, "SELECT event_date, sum(late) FROM quality WHERE event_date IS NOT NULL GROUP BY 1"))
    late_per_day = {"days": days, "late": late, "all_zero": not any(late)}

    return {
        "origin": origin,
        "totals": totals,
        "events_per_day": events_per_day,
        "duplicate_share": duplicate_share,
        "clusters": cluster_data,
        "rejects_by_reason": rejects_by_reason,
        "late_per_day": late_per_day,
    }


# --------------------------------------------------------------------------- page

# Drag to zoom, double-click to reset; the mode bar keeps only "download as PNG" and "reset".
_CONFIG = {"displaylogo": False, "responsive": True,
           "modeBarButtonsToRemove": ["zoom2d", "pan2d", "select2d", "lasso2d", "zoomIn2d", "zoomOut2d",
                                      "autoScale2d"]}


def _layout(go, *, height: int = 340, **extra) -> Any:
    base = dict(template="plotly_white", height=height, margin=dict(l=56, r=16, t=16, b=48),
                legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, traceorder="normal"),
                font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12))
    base.update(extra)
    return go.Layout(**base)


def _day_axis(days: list[str]) -> dict:
    axis: dict[str, Any] = dict(type="date", title=None, tickformat="%b %d\n%Y")
    if not days:
        axis["showticklabels"] = False
    if 0 < len(days) and _span_days(days) <= 14:
        axis["dtick"] = 86400000  # one tick per day
    if len(days) == 1:  # a single bar on a date axis: give the axis one day either side
        d = dt.date.fromisoformat(days[0])
        axis["range"] = [(d - dt.timedelta(days=1)).isoformat(), (d + dt.timedelta(days=1)).isoformat()]
    return axis


# Bars on a day axis are 0.8 day wide whatever the spacing of the days (plotly would make a
# lone day's bar 1 ms wide, and bars of days a week apart a week wide).
BAR_WIDTH_MS = 0.8 * 86400000


def _count_axis(values, **extra) -> dict:
    """A count axis: whole-number ticks (one per unit while the counts are small)."""
    axis = dict(rangemode="tozero", tickformat=",d", **extra)
    if values and max(values) <= 8:
        axis["dtick"] = 1
    return axis


def _span_days(days: list[str]) -> int:
    return (dt.date.fromisoformat(days[-1]) - dt.date.fromisoformat(days[0])).days + 1


def _empty_note(text: str) -> dict:
    return dict(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                font=dict(size=14, color="#6b7280"))


def _fig_events_per_day(go, d: dict):
    from plotly.colors import qualitative

    fig = go.Figure(layout=_layout(go, barmode="stack", xaxis=_day_axis(d["days"]), showlegend=True,
                                   yaxis=_count_axis(d["total"], title="events")))
    for i, s in enumerate(d["series"]):
        fig.add_bar(x=d["days"], y=s["counts"], name=s["source"], width=BAR_WIDTH_MS,
                    marker_color=COLOR_OTHER if s.get("other") else qualitative.T10[i % len(qualitative.T10)],
                    hovertemplate="%{x|%Y-%m-%d}: %{y} events<extra>%{fullData.name}</extra>")
    if not d["series"]:
        fig.add_annotation(**_empty_note("No events in this dataset"))
    return fig


def _fig_duplicate_share(go, d: dict):
    fig = go.Figure(layout=_layout(go, barmode="stack", xaxis=_day_axis(d["days"]),
                                   yaxis=dict(title="share of events + duplicates", tickformat=".0%",
                                              rangemode="tozero")))
    whole = [e + x + n for e, x, n in zip(d["events"], d["exact"], d["near"])]
    for key, name, color in (("exact", "exact duplicates", COLOR_EXACT), ("near", "near duplicates", COLOR_NEAR)):
        fig.add_bar(x=d["days"], y=d[f"{key}_share"], name=name, marker_color=color, width=BAR_WIDTH_MS,
                    customdata=[[c, w] for c, w in zip(d[key], whole)],
                    hovertemplate="%{x|%Y-%m-%d}: %{y:.1%} (%{customdata[0]} of %{customdata[1]})"
                                  f"<extra>{name}</extra>")
    if not any(d["exact"]) and not any(d["near"]):
        fig.add_annotation(**_empty_note("No duplicates on any day"))
        fig.update_yaxes(range=[0, 1])
    return fig


def _fig_rejects(go, d: dict):
    reasons, counts = d["reasons"], d["counts"]
    height = max(180, 100 + 34 * len(reasons))
    fig = go.Figure(layout=_layout(go, height=height, margin=dict(l=24, r=32, t=16, b=40), bargap=0.4,
                                   xaxis=_count_axis(counts, title="rejected inputs"),
                                   yaxis=dict(autorange="reversed", automargin=True)))
    fig.add_bar(x=counts, y=reasons, orientation="h", marker_color=COLOR_REJECT, name="rejects",
                text=counts, textposition="outside", cliponaxis=False,
                customdata=[r["stages"] for r in d["details"]],
                hovertemplate="%{y}: %{x} (stage %{customdata})<extra></extra>")
    if not reasons:
        fig.add_annotation(**_empty_note("No rejects: every input was read"))
        fig.update_xaxes(range=[0, 1], dtick=1)
        fig.update_yaxes(showticklabels=False)
    return fig


def _fig_late(go, d: dict):
    fig = go.Figure(layout=_layout(go, xaxis=_day_axis(d["days"]),
                                   yaxis=_count_axis(d["late"], title="late updates")))
    fig.add_bar(x=d["days"], y=d["late"], name="late", marker_color=COLOR_LATE, width=BAR_WIDTH_MS,
                hovertemplate="%{x|%Y-%m-%d}: %{y} late updates<extra></extra>")
    if d["all_zero"]:
        fig.add_annotation(**_empty_note("0 late updates on every day"))
        fig.update_yaxes(range=[0, 1], dtick=1)
    return fig


def _chart(fig, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG,
                       default_height=f"{fig.layout.height}px")


def _norm_word(w: str) -> str:
    return re.sub(r"\W+", "", w.casefold()) or w


def _diff_html(kept: str, copy: str) -> tuple[str, str]:
    """Both texts escaped, with the words that the other text lacks highlighted."""
    a, b = kept.split(), copy.split()
    sm = difflib.SequenceMatcher(None, [_norm_word(w) for w in a], [_norm_word(w) for w in b], autojunk=False)
    out_a, out_b = [], []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        ta = html.escape(" ".join(a[i1:i2]))
        tb = html.escape(" ".join(b[j1:j2]))
        if op == "equal":
            out_a.append(ta)
            out_b.append(tb)
        else:
            if ta:
                out_a.append(f'<del>{ta}</del>')
            if tb:
                out_b.append(f'<ins>{tb}</ins>')
    return " ".join(out_a), " ".join(out_b)


def _clusters_html(c: dict) -> str:
    e = html.escape
    if c["fallback"]:
        intro = ("<p class='note'>No near duplicates in this dataset: these are the largest <b>exact</b>"
                 " duplicate clusters instead (same text once case, quotes, dashes, spacing and"
                 " punctuation are ignored).</p>") if c["clusters"] else ""
    else:
        intro = ("<p class='note'>Largest near-duplicate clusters: the kept row and its copies, least"
                 " similar first. <del>Struck</del> words are in the kept text only, <ins>highlighted</ins>"
                 " words in the copy only.</p>")
    if not c["clusters"]:
        return ("<p class='note'>No duplicates in this dataset: every block read is its own event"
                " or a reject.</p>")
    rows = []
    for k in c["clusters"]:
        n = len(k["shown"])
        more = k["copies"] - n
        kept_text = k["kept_text"] if k["kept_text"] is not None else ""
        for i, cp in enumerate(k["shown"]):
            kept_html, copy_html = _diff_html(kept_text, cp["text"])
            cells = []
            if i == 0:
                span = n + (1 if more else 0)
                cells.append(
                    f"<td class='kept' rowspan='{span}'><div class='meta'>{e(k['event_date'] or '')} · "
                    f"{e(k['kept_source'] or '?')} · {k['copies']} cop{'y' if k['copies'] == 1 else 'ies'}"
                    f"</div>{kept_html if k['kept_text'] is not None else '<i>kept row not found</i>'}</td>")
            cells.append(f"<td class='copy'>{copy_html}</td>")
            cells.append(f"<td class='src'>{e(cp['source'])}<div class='meta'>{e(cp['article_id'])}</div></td>")
            cells.append(f"<td class='num'>{cp['similarity']:.2f}</td>")
            rows.append(f"<tr{' class=first' if i == 0 else ''}>{''.join(cells)}</tr>")
        if more:
            rows.append(f"<tr><td class='more' colspan='3'>… and {more} more "
                        f"cop{'y' if more == 1 else 'ies'}</td></tr>")
    return (f"{intro}<table id='{CLUSTERS_ID}' class='clusters' data-method='{c['method']}'>"
            "<thead><tr><th>kept text</th><th>copy text</th><th>source</th><th>similarity</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _rejects_table(d: dict) -> str:
    if not d["details"]:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r['reason'])}</td><td class='num'>{r['count']}</td><td>{e(r['stages'] or '')}</td>"
        f"<td><div class='meta'>{e(os.path.basename(r['example_uri'] or ''))}"
        f"{'' if r['example_line'] is None else ':' + str(r['example_line'])}</div>"
        f"<code>{e(r['example_raw'])}</code></td></tr>" for r in d["details"])
    return ("<table class='rejects'><thead><tr><th>reason</th><th>rejects</th><th>stage</th>"
            f"<th>first example</th></tr></thead><tbody>{rows}</tbody></table>")


_CSS = """
:root { --ink: #1f2937; --mute: #6b7280; --line: #e5e7eb; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 16px 40px; }
header h1 { font-size: 22px; margin: 0 0 2px; }
header .origin { color: var(--mute); margin: 0 0 14px; word-break: break-all; }
.kpis { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-bottom: 8px; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.kpi .n { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.kpi .l { color: var(--mute); }
.check { margin: 6px 0 16px; color: var(--mute); }
.check.bad { color: #b91c1c; font-weight: 600; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card h2 { font-size: 16px; margin: 0 0 2px; }
.card .what { color: var(--mute); margin: 0 0 6px; font-size: 13px; }
.note { color: var(--mute); font-size: 13px; margin: 6px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; color: var(--mute); font-weight: 600; border-bottom: 1px solid var(--line); padding: 6px 8px; }
td { vertical-align: top; padding: 6px 8px; border-bottom: 1px solid var(--line); }
table.clusters td.kept { width: 38%; background: #f9fafb; }
table.clusters td.copy { width: 38%; }
tr.first td { border-top: 2px solid #d1d5db; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.more { color: var(--mute); font-style: italic; }
.meta { color: var(--mute); font-size: 12px; }
ins { background: #dcfce7; text-decoration: none; }
del { background: #fee2e2; }
code { font-size: 12px; white-space: pre-wrap; word-break: break-all; }
footer { color: var(--mute); font-size: 12px; margin-top: 18px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } .kpis { grid-template-columns: 1fr 1fr; } }
"""


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def render_html(data: dict) -> str:
    """The report page for `report_data`'s dict: one HTML document, plotly.js embedded once."""
    import plotly
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    e = html.escape
    t, o = data["totals"], data["origin"]
    if o["first_day"]:
        span = o["first_day"] if o["first_day"] == o["last_day"] else f"{o['first_day']} to {o['last_day']}"
        span = f"{span} ({_plural(o['days'], 'day')})"
    else:
        span = "no days"
    origin = (f"Dataset <b>{e(o['dataset'])}</b>" + (f", written {e(o['written'])}" if o["written"] else "")
              + f" · {span} · {_plural(o['sources'], 'source')} · {_plural(o['articles'], 'article')}")
    kpis = [
        (t["blocks_read"], "block read" if t["blocks_read"] == 1 else "blocks read"),
        (t["events"], "event" if t["events"] == 1 else "events"),
        (t["duplicates"], ("duplicate" if t["duplicates"] == 1 else "duplicates")
         + f" ({t['exact_duplicates']:,} exact, {t['near_duplicates']:,} near)"),
        (t["rejects"], ("reject" if t["rejects"] == 1 else "rejects")
         + (f" (from {_plural(o['files_with_rejects'], 'file')})" if t["rejects"] else "")),
    ]
    kpi_html = "".join(f"<div class='kpi'><div class='n'>{n:,}</div><div class='l'>{e(label)}</div></div>"
                       for n, label in kpis)
    total = t["events"] + t["duplicates"] + t["rejects"] + t["redelivered"]
    redelivered = f" + {_plural(t['redelivered'], 'redelivery', 'redeliveries')}" if t["redelivered"] else ""
    if t["balanced"]:
        check = (f"<p class='check'>Accounting balances: {_plural(t['blocks_read'], 'block')} read = "
                 f"{_plural(t['events'], 'event')} + {_plural(t['duplicates'], 'duplicate')} + "
                 f"{_plural(t['rejects'], 'reject')}{e(redelivered)}.</p>")
    else:
        check = (f"<p class='check bad'>Accounting does not balance: {_plural(t['blocks_read'], 'block')} read,"
                 f" but events + duplicates + rejects + redeliveries = {total:,}.</p>")

    epd, ds, rj, late = (data["events_per_day"], data["duplicate_share"], data["rejects_by_reason"],
                         data["late_per_day"])
    other_note = ""
    if epd["other_sources"]:
        other_note = (f"<p class='note'>Grey: {_plural(len(epd['other_sources']), 'smaller source')} grouped "
                      f"as “other”.</p>")
    near_note = "" if any(ds["near"]) else "<p class='note'>No near duplicates on any day.</p>"
    late_note = ("<p class='note'>Every day has 0 late updates in <code>quality.late</code> (a batch run has"
                 " none: late data comes from streaming runs).</p>"
                 if late["all_zero"] else "")
    cards = [
        ("Events per day by source", "Distinct events written per UTC day, stacked by publisher.",
         _chart(_fig_events_per_day(go, epd), CHART_IDS["events_per_day"]) + other_note, ""),
        ("Duplicate share per day", "Duplicates ÷ (events + duplicates) for each day, exact and near.",
         _chart(_fig_duplicate_share(go, ds), CHART_IDS["duplicate_share"]) + near_note, ""),
        ("Rejects by reason", "Refused inputs per reason (every refusal is a row of the rejects table).",
         _chart(_fig_rejects(go, rj), CHART_IDS["rejects_by_reason"]) + _rejects_table(rj), ""),
        ("Late updates per day", "Updates that arrived after their day's window had closed (past --allowed-lateness):"
         " quality.late, kept as rejects with reason late.",
         _chart(_fig_late(go, late), CHART_IDS["late_per_day"]) + late_note, ""),
        ("Largest near-duplicate clusters" if not data["clusters"]["fallback"]
         else "Largest duplicate clusters", "What was merged: the kept text and its copies side by side.",
         _clusters_html(data["clusters"]), "wide"),
    ]
    cards_html = "".join(f"<section class='card {cls}'><h2>{e(title)}</h2><p class='what'>{e(what)}</p>"
                         f"{body}</section>" for title, what, body, cls in cards)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>newsevents report · {e(os.path.basename(o['dataset'].rstrip('/')) or o['dataset'])}</title>"
        f"<style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        "</head><body><main>"
        f"<header><h1>newsevents report</h1><p class='origin'>{origin}</p>"
        f"<div class='kpis'>{kpi_html}</div>{check}</header>"
        f"<div class='grid'>{cards_html}</div>"
        f"<footer>Charts: plotly {e(plotly.__version__)} (plotly.js embedded; the page needs no network). "
        "Numbers computed with DuckDB over the dataset's events, duplicates, rejects and quality tables.</footer>"
        "</main></body></html>\n"
    )


# --------------------------------------------------------------------------- file and command line


def write_report(root: str, html_path: str) -> None:
    """Compute the report for the dataset at `root` and write it to `html_path` (by rename).

    Raises `pipelines.sql.SqlError` for a missing or unreadable dataset and `OSError` when
    `html_path` cannot be written.
    """
    _write_report(root, html_path)


def _write_report(root: str, html_path: str) -> dict:
    data = report_data(root)
    page = render_html(data)
    directory = os.path.dirname(os.path.abspath(html_path))
    if os.path.isdir(html_path):
        raise IsADirectoryError(f"{html_path} is a directory")
    tmp = os.path.join(directory, f".{os.path.basename(html_path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, html_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return data


def _error(msg: str) -> int:
    print(f"newsevents: error: {msg}", file=sys.stderr)
    return 2


def report_command(root: str, html_path: str) -> int:
    """`newsevents report DIR --html PATH` once parsed (`pipelines.cli`): 0 when written, with one
    line on stdout; 2 with one stderr line for a missing or unreadable dataset or an unwritable path."""
    import duckdb

    from pipelines.sql import SqlError

    try:
        data = _write_report(root, html_path)
    except SqlError as e:
        return _error(str(e))
    except duckdb.Error as e:
        return _error(f"cannot read dataset {root}: {str(e).splitlines()[0]}")
    except OSError as e:
        return _error(f"cannot write report {html_path}: {e.strerror or e}")
    t = data["totals"]
    size = os.path.getsize(html_path)
    print(f"newsevents: wrote {html_path} ({size / 1e6:.1f} MB): {_plural(t['events'], 'event')}, "
          f"{_plural(t['duplicates'], 'duplicate')}, {_plural(t['rejects'], 'reject')} "
          f"over {_plural(data['origin']['days'], 'day')}")
    return 0


def main_report(argv: list[str]) -> int:
    """`newsevents report ARGS...`: the `report` command of the one command line (`pipelines.cli`)."""
    from pipelines.cli import command

    return command(["report", *argv])


if __name__ == "__main__":
    sys.exit(main_report(sys.argv[1:]))
