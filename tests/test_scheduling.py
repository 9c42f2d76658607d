"""Scheduling: the cron wrapper (with a fake and with the real CLI), crontab.example, the Airflow DAG.

The wrapper is tested against a fake `newsevents` that records its arguments and exits with
the codes it is told to; the DAG is checked with `ast`, then run for real with `airflow dags test`
in a separate virtualenv with a pinned Airflow (built once under ~/.cache/newsevents/: Airflow is
not a project dependency, and its dependencies conflict with Beam's).
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, query, write_jsonl

SCHEDULE_DIR = REPO / "runners" / "schedule"
WRAPPER = SCHEDULE_DIR / "newsevents-daily.sh"
CRONTAB = SCHEDULE_DIR / "crontab.example"
DAG_FILE = SCHEDULE_DIR / "newsevents_dag.py"

FAKE = """#!{python}
# fake newsevents: records its arguments, exits with the next code from `codes` (0 when none left)
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
path = os.path.join(here, "codes")
codes = open(path).read().split() if os.path.exists(path) else []
code = int(codes.pop(0)) if codes else 0
with open(path, "w") as f:
    f.write(" ".join(codes))
print("fake newsevents", code)
sys.exit(code)
"""


class Fake:
    def __init__(self, root: Path):
        self.dir = root / "bin"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.exe = self.dir / "newsevents"
        self.exe.write_text(FAKE.format(python=sys.executable))
        self.exe.chmod(self.exe.stat().st_mode | stat.S_IXUSR)

    def exits(self, *codes: int) -> None:
        (self.dir / "codes").write_text(" ".join(map(str, codes)))

    @property
    def calls(self) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("NEWSEVENTS")}
    e.update(NEWSEVENTS_RETRY_SLEEP="0", **extra)
    return e


def run_wrapper(fake: Fake, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(WRAPPER), *args], env=env(NEWSEVENTS=str(fake.exe), **extra),
                          capture_output=True, text=True, timeout=60)


def expected(drops: str, day: str, out: str, *rest: str) -> list[str]:
    return ["run", "--input", f"{drops}/{{date}}", "--date", day, "--output", out, *rest]


# --- the wrapper ----------------------------------------------------------------------------

def test_wrapper_syntax():
    subprocess.run(["bash", "-n", str(WRAPPER)], check=True)
    assert os.access(WRAPPER, os.X_OK), "the wrapper must be executable (cron runs it directly)"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_wrapper_shellcheck():
    subprocess.run(["shellcheck", str(WRAPPER)], check=True)


def test_default_date_is_yesterday_in_utc(tmp_path):
    fake = Fake(tmp_path)
    before = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).date().isoformat()
    # A time zone 14 hours ahead of UTC: a wrapper using local time would often pick today (UTC).
    r = run_wrapper(fake, "/data/drops", "/data/news", TZ="Pacific/Kiritimati")
    after = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).date().isoformat()
    assert r.returncode == 0, r.stderr
    [call] = fake.calls
    assert call in (expected("/data/drops", before, "/data/news"), expected("/data/drops", after, "/data/news"))
    assert "fake newsevents 0" in r.stdout  # the run's output passes through


def test_date_pattern_and_extra_options_pass_through(tmp_path):
    fake = Fake(tmp_path)
    r = run_wrapper(fake, "/data/drops/", "s3://bucket/news", "2024-03-05",
                    "--allowed-lateness", "7d", "--runner=DirectRunner")
    assert r.returncode == 0, r.stderr
    # `{date}` goes to newsevents literally, with --date: newsevents substitutes it
    assert fake.calls == [expected("/data/drops", "2024-03-05", "s3://bucket/news",
                                   "--allowed-lateness", "7d", "--runner=DirectRunner")]


def test_options_without_a_date_use_the_default_date(tmp_path):
    fake = Fake(tmp_path)
    r = run_wrapper(fake, "d", "o", "--near", "off")
    assert r.returncode == 0, r.stderr
    [call] = fake.calls
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", call[4]) and call[7:] == ["--near", "off"]


def test_retries_while_the_output_is_locked(tmp_path):
    fake = Fake(tmp_path)
    fake.exits(75, 75, 0)
    r = run_wrapper(fake, "d", "o", "2024-03-05", NEWSEVENTS_RETRIES="3")
    assert r.returncode == 0, r.stderr
    assert fake.calls == [expected("d", "2024-03-05", "o")] * 3
    assert r.stderr.count("locked by another run") == 2


def test_gives_up_with_75_after_the_last_retry(tmp_path):
    fake = Fake(tmp_path)
    fake.exits(75, 75, 75, 0)
    r = run_wrapper(fake, "d", "o", "2024-03-05", NEWSEVENTS_RETRIES="2")
    assert r.returncode == 75
    assert len(fake.calls) == 3


@pytest.mark.parametrize("code", [1, 2])
def test_other_failures_pass_through_without_retry(tmp_path, code):
    fake = Fake(tmp_path)
    fake.exits(code, 0)
    r = run_wrapper(fake, "d", "o", "2024-03-05")
    assert r.returncode == code
    assert len(fake.calls) == 1


@pytest.mark.parametrize("args", [[], ["only-drops"], ["d", "o", "5 March"], ["d", "o", "2024-3-5"]])
def test_usage_errors_exit_2_without_a_run(tmp_path, args):
    fake = Fake(tmp_path)
    r = run_wrapper(fake, *args)
    assert r.returncode == 2
    assert fake.calls == []
    assert r.stderr.strip()


def test_bad_retry_settings_exit_2(tmp_path):
    fake = Fake(tmp_path)
    r = run_wrapper(fake, "d", "o", "2024-03-05", NEWSEVENTS_RETRIES="many")
    assert r.returncode == 2 and fake.calls == []


def test_newsevents_on_path_by_default(tmp_path):
    fake = Fake(tmp_path)
    e = env(PATH=f"{fake.dir}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", str(WRAPPER), "d", "o", "2024-03-05"], env=e, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert fake.calls == [expected("d", "2024-03-05", "o")]


# --- the wrapper with the real CLI -----------------------------------------------------------

def real_cli(tmp_path: Path) -> Path:
    """A `newsevents` executable that runs this checkout with the test interpreter."""
    exe = tmp_path / "real" / "newsevents"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" '
                   f'-m pipelines.cli "$@"\n')
    exe.chmod(0o755)
    return exe


def test_real_cli_missing_drop_is_exit_2(tmp_path):
    (tmp_path / "drops").mkdir()
    r = subprocess.run(["bash", str(WRAPPER), str(tmp_path / "drops"), str(tmp_path / "out"), "2024-03-05"],
                       env=env(NEWSEVENTS=str(real_cli(tmp_path))), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "input not found" in r.stderr


def test_real_cli_runs_the_days_drop_and_skips_partial_files(tmp_path):
    drops = tmp_path / "drops"
    day = drops / "2024-03-05"
    write_jsonl(day / "feed.jsonl", [
        {"article_id": "a1", "source": "wire", "published_at": "2024-03-05T10:00:00+00:00",
         "headline": "Storm", "text": "A storm hit the coast on Tuesday.\nThousands lost power."},
        {"article_id": "a2", "source": "paper", "published_at": "2024-03-05T12:00:00+00:00",
         "headline": "Storm", "text": "A storm hit the coast on Tuesday."},
    ])
    (day / "_feed2.jsonl.tmp").write_text('{"half written')  # a writer still at work: skipped
    write_jsonl(drops / "2024-03-06" / "feed.jsonl", [  # another day: not read
        {"article_id": "a3", "source": "wire", "published_at": "2024-03-06T09:00:00+00:00", "text": "Later news."}])
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(WRAPPER), str(drops), str(out), "2024-03-05"],
                       env=env(NEWSEVENTS=str(real_cli(tmp_path))), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert query(out, "SELECT count(*) FROM events")[0][0] == 2
    assert query(out, "SELECT count(*) FROM duplicates")[0][0] == 1
    assert query(out, "SELECT count(*) FROM rejects")[0][0] == 0


def table_rows(out: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted: what a backfill in any order must reproduce."""
    return {
        "events": query(out, "SELECT event_id, event_date, source, text, mention_count, cluster_id"
                             " FROM events ORDER BY ALL"),
        "duplicates": query(out, "SELECT event_id, event_date, source, article_id, method"
                                 " FROM duplicates ORDER BY ALL"),
        "rejects": query(out, "SELECT source_uri, line, reason FROM rejects ORDER BY ALL"),
        "quality": query(out, "SELECT * FROM quality ORDER BY ALL"),
    }


def test_daily_runs_in_any_order_equal_one_run_over_all_days(tmp_path):
    drops = tmp_path / "drops"
    write_jsonl(drops / "2024-03-05" / "a.jsonl", [
        {"article_id": "a1", "source": "wire", "published_at": "2024-03-05T10:00:00+00:00",
         "text": "A storm hit the coast.\nSchools closed early."}])
    # A week later: a copy of 5 March's news, published then and scraped late, and news of its own day.
    write_jsonl(drops / "2024-03-12" / "b.jsonl", [
        {"article_id": "b1", "source": "paper", "published_at": "2024-03-05T11:00:00+00:00",
         "text": "A storm hit the coast.\nThe bridge closed."},
        {"article_id": "b2", "source": "paper", "published_at": "2024-03-12T08:00:00+00:00", "text": "Repairs began."}])
    cli = real_cli(tmp_path)
    e = env(NEWSEVENTS=str(cli))

    def daily(out: Path, day: str) -> None:
        r = subprocess.run(["bash", str(WRAPPER), str(drops), str(out), day], env=e, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr

    whole = tmp_path / "whole"
    r = subprocess.run([str(cli), "run", "--input", str(drops), "--output", str(whole)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    expect = table_rows(whole)
    assert sum(n for *_, n, _ in expect["events"]) == 5 and len(expect["duplicates"]) == 1

    for order in (["2024-03-05", "2024-03-12"], ["2024-03-12", "2024-03-05"]):
        out = tmp_path / "-".join(order)
        for day in order:
            daily(out, day)
        assert table_rows(out) == expect, f"days run in the order {order}"
    daily(out, "2024-03-12")  # a rerun changes nothing
    assert table_rows(out) == expect


# --- crontab.example -------------------------------------------------------------------------

CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?)(/\d+)?)*$")
CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def crontab_lines() -> list[str]:
    return [ln for ln in CRONTAB.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_crontab_lines_parse():
    jobs = []
    for line in crontab_lines():
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            continue  # an environment setting
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not 5 time fields and a command: {line!r}"
        for value, (lo, hi) in zip(fields[:5], CRON_RANGES):
            assert CRON_FIELD.match(value), f"bad cron field {value!r} in {line!r}"
            assert all(lo <= int(n) <= hi for n in re.findall(r"\d+", value.split("/")[0])), line
        assert "%" not in fields[5], "cron turns % into a newline; the wrapper computes the date"
        jobs.append(fields)
    assert jobs, "no cron job in crontab.example"
    for fields in jobs:
        assert fields[5].split()[0].endswith("/runners/schedule/newsevents-daily.sh")
    assert "CRON_TZ=UTC" in crontab_lines()


def backfill_line() -> str:
    [line] = [ln[2:] for ln in CRONTAB.read_text().splitlines() if ln.startswith("# start=")]
    return line


def test_backfill_one_liner_runs_days_in_order(tmp_path):
    fake = Fake(tmp_path)
    cmd = backfill_line().replace("/opt/newsevents/runners/schedule/newsevents-daily.sh", str(WRAPPER))
    cmd = re.sub(r"start=\S+ end=\S+;", "start=2024-02-27 end=2024-03-02;", cmd)
    subprocess.run(["bash", "-n", "-c", cmd], check=True)
    r = subprocess.run(["bash", "-c", cmd], env=env(NEWSEVENTS=str(fake.exe)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert [c[4] for c in fake.calls] == ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]

    fake2 = Fake(tmp_path / "second")
    fake2.exits(0, 2)  # the second day has no drop: the backfill stops there, and says so
    r = subprocess.run(["bash", "-c", cmd], env=env(NEWSEVENTS=str(fake2.exe)), capture_output=True, text=True,
                       timeout=60)
    assert [c[4] for c in fake2.calls] == ["2024-02-27", "2024-02-28"]
    assert "backfill stopped at 2024-02-28" in r.stderr


# --- the Airflow DAG -------------------------------------------------------------------------

def dag_tree() -> ast.Module:
    return ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))


def call_named(tree: ast.AST, name: str) -> ast.Call:
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]
    assert len(calls) == 1, f"expected one call to {name}, found {len(calls)}"
    return calls[0]


def kwargs(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def module_constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no module-level {name}")


AIRFLOW_VERSION = "2.10.5"  # wheels for Python 3.8-3.12 on PyPI
AIRFLOW_CONSTRAINTS = REPO / "tests" / "airflow-constraints.txt"  # `pip freeze` of that install


def test_dag_uses_only_core_operators_and_runs_the_project_interpreter():
    tree = dag_tree()
    imports = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("providers.apache.beam" in m or "providers.google" in m for m in imports)
    op = kwargs(call_named(tree, "PythonOperator"))
    options = op["op_kwargs"]
    literal = {ast.literal_eval(k): v for k, v in zip(options.keys, options.values) if k is not None}
    assert ast.literal_eval(literal["date"]) == "{{ ds }}"
    assert "DirectRunner" in ast.unparse(literal["runner"])
    assert {"python", "drops", "output"} <= set(literal)


def test_dag_runs_one_day_at_a_time_with_catchup_and_retries():
    tree = dag_tree()
    dag = kwargs(call_named(tree, "DAG"))
    assert ast.literal_eval(dag["max_active_runs"]) == 1
    assert ast.literal_eval(dag["catchup"]) is True
    # An explicit data-interval timetable: `{{ ds }}` is the day that ended, in Airflow 2 and 3 alike.
    schedule = dag["schedule"]
    assert isinstance(schedule, ast.Call) and ast.unparse(schedule.func) == "CronDataIntervalTimetable"
    assert module_constant(tree, "SCHEDULE") == "15 2 * * *"
    assert "UTC" in ast.unparse(schedule)
    defaults = dag["default_args"]
    keys = {ast.literal_eval(k) for k in defaults.keys}
    assert {"retries", "retry_delay"} <= keys


def test_dag_default_interpreter_is_the_checkouts_venv():
    # the README's quick start makes REPO/.venv; the DAG's default NEWSEVENTS_PYTHON is its python
    assert module_constant(dag_tree(), "SCHEDULE")
    src = DAG_FILE.read_text()
    assert '".venv", "bin", "python"' in src


def airflow_exe() -> Path:
    """`airflow` of a separate virtualenv with apache-airflow (its dependencies conflict with
    Beam's), built once under ~/.cache/newsevents/ from PyPI with the pinned versions."""
    venv = Path.home() / ".cache" / "newsevents" / f"airflow-{AIRFLOW_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
    exe, done = venv / "bin" / "airflow", venv / ".complete"
    if done.exists() and exe.exists():
        return exe
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(AIRFLOW_CONSTRAINTS),
                        f"apache-airflow=={AIRFLOW_VERSION}"], check=True, capture_output=True, text=True,
                       timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = (getattr(e, "stderr", None) or str(e)).strip().splitlines()[-1:] or [str(e)]
        message = f"cannot build the Airflow {AIRFLOW_VERSION} virtualenv at {venv}: {detail[0]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + " (CI is not set)")
    done.write_text(AIRFLOW_VERSION + "\n")
    return exe


def airflow(exe: Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_airflow_dags_test_runs_the_sample_day(tmp_path):
    """The DAG imports in a real Airflow without any provider package, and `airflow dags test`
    runs one day's task: the bundled sample as the drop of 2024-03-05, with the project's own
    interpreter; then a day without a drop fails at once (exit 2 is not retried)."""
    exe = airflow_exe()
    drops, out = tmp_path / "drops", tmp_path / "out"
    shutil.copytree(REPO / "sample" / "input", drops / "2024-03-05")
    e = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSEVENTS", "AIRFLOW"))}
    e.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__DAGS_FOLDER=str(SCHEDULE_DIR),
             AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="False",
             AIRFLOW_VAR_NEWSEVENTS_DROPS=str(drops), AIRFLOW_VAR_NEWSEVENTS_OUTPUT=str(out),
             NEWSEVENTS_PYTHON=sys.executable)
    r = airflow(exe, e, "db", "migrate")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = airflow(exe, e, "dags", "list-import-errors")
    assert "No data found" in r.stdout + r.stderr, r.stdout + r.stderr
    # the run whose interval ends on 2024-03-05 02:15 UTC: {{ ds }} = 2024-03-05
    r = airflow(exe, e, "dags", "test", "newsevents_daily", "2024-03-05T02:15:00+00:00")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "--date 2024-03-05" in log and "Marking task as SUCCESS" in log
    assert query(out, "SELECT count(*) FROM events")[0][0] > 0
    direct = tmp_path / "direct"
    subprocess.run([sys.executable, "-m", "pipelines.news_events", "--input", str(drops / "2024-03-05"),
                    "--output", str(direct)], check=True, capture_output=True, timeout=300)
    sql = "SELECT event_id, event_date, mention_count, text FROM events ORDER BY event_id"
    assert query(out, sql) == query(direct, sql)
    # no drop for 2024-03-06: newsevents exits 2, and the task fails without waiting for retries
    started = dt.datetime.now()
    r = airflow(exe, e, "dags", "test", "newsevents_daily", "2024-03-06T02:15:00+00:00", timeout=120)
    log = r.stdout + r.stderr
    assert "input not found" in log and "exited with status 2 (not retried)" in log, log[-4000:]
    assert "Marking task as FAILED" in log
    assert (dt.datetime.now() - started).total_seconds() < 120
