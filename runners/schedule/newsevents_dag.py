"""newsevents every day at 02:15 UTC from Airflow (2.x or 3.x): one Beam run per day's drop.

The run for day D (`{{ ds }}`) starts on D+1 at 02:15 UTC and merges DROPS/D/ into the one output
dataset; on the DirectRunner the task runs

    PYTHON .../pipelines/news_events.py --runner=DirectRunner --input=DROPS/{date} \
        --output=OUTPUT --date=D --labels=airflow-version=...

(the operator turns `pipeline_options` into `--key=value` flags; newsevents replaces `{date}`
by `--date`). What the schedule relies on (docs/scheduling.md): runs are idempotent and
incremental, so catch-up, backfill and "clear" reruns give the same rows as one run over every
day; one run at a time per output (`max_active_runs=1`; a run that still finds the output
locked exits 75 and the task is retried after `retry_delay`).

The schedule is an explicit `CronDataIntervalTimetable`: a bare cron string means the day *of*
the run in Airflow 3 (`CronTriggerTimetable`) but the day *before* it in Airflow 2.

Settings. Airflow Variables, read when the task runs (a manual trigger's params override them):
    newsevents_drops     folder of the daily drop folders        default /data/drops
    newsevents_output    output dataset                          default /data/news
    newsevents_runner    DirectRunner, FlinkRunner, ...          default DirectRunner
    newsevents_py_file   pipelines/news_events.py to run         default: the one Airflow can import,
                                                                 else /opt/newsevents/pipelines/...
Environment of the scheduler and workers, read when this file is parsed:
    NEWSEVENTS_PYTHON        interpreter with newsevents installed (default: Airflow's own)
    NEWSEVENTS_START_DATE    first day of drops (default 2024-01-01): catch-up starts there
    NEWSEVENTS_BEAM_OPTIONS  JSON object of runner options added to every run, e.g.
                             {"flink_master": "jobmanager:8081", "environment_type": "EXTERNAL",
                              "environment_config": "localhost:50000"}
newsevents and its pinned dependencies are installed in NEWSEVENTS_PYTHON beforehand
(`pip install -c constraints.txt newsevents-0.1.0-py3-none-any.whl`), so `py_requirements` stays
None: a per-run virtualenv would reinstall Beam every day (`py_system_site_packages` only
applies to that virtualenv). DataflowRunner also needs `dataflow_config` (project_id, location)
on the operator and `temp_location` among the options (runners/dataflow.md).

Requires apache-airflow-providers-apache-beam and, even for the DirectRunner,
apache-airflow-providers-google (provider 6.3 refuses to create the operator without it).
Importable only where Airflow is installed. Airflow 3 backfills have their own run limit:
`airflow backfill create --dag-id newsevents_daily --from-date ... --to-date ... --max-active-runs 1`.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import sys

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

try:  # Airflow 3
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable

SCHEDULE = "15 2 * * *"  # 02:15 UTC, for the UTC day that ended at midnight
PYTHON = os.environ.get("NEWSEVENTS_PYTHON") or sys.executable
START_DATE = dt.datetime.fromisoformat(os.environ.get("NEWSEVENTS_START_DATE", "2024-01-01")).replace(
    tzinfo=dt.timezone.utc)
EXTRA_OPTIONS = json.loads(os.environ.get("NEWSEVENTS_BEAM_OPTIONS") or "{}")


def _installed_py_file() -> str:
    """pipelines/news_events.py of the newsevents installed here, else the usual checkout path."""
    try:
        spec = importlib.util.find_spec("pipelines.news_events")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and spec.origin.endswith(os.path.join("pipelines", "news_events.py")):
        return spec.origin
    return "/opt/newsevents/pipelines/news_events.py"


def _setting(name: str, default: str) -> str:
    """Template: the trigger's param `name`, else Variable `newsevents_<name>`, else `default`."""
    return "{{ params.%s or var.value.get('newsevents_%s', %r) }}" % (name, name, default)


with DAG(
    dag_id="newsevents_daily",
    description="news articles and live blogs of the day -> deduplicated day-partitioned events",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=START_DATE,
    catchup=True,  # a new or paused DAG runs every missed day, one at a time
    max_active_runs=1,  # runs on one output must not overlap
    default_args={
        "retries": 3,  # exit 75 (output locked) and transient failures
        "retry_delay": dt.timedelta(minutes=10),
    },
    params={"drops": "", "output": "", "runner": ""},
    tags=["newsevents"],
    doc_md=__doc__,
) as dag:
    BeamRunPythonPipelineOperator(
        task_id="newsevents_run",
        py_file="{{ var.value.get('newsevents_py_file', %r) }}" % _installed_py_file(),
        py_interpreter=PYTHON,
        py_requirements=None,
        py_system_site_packages=False,
        runner=_setting("runner", "DirectRunner"),
        pipeline_options={
            "input": _setting("drops", "/data/drops") + "/{date}",
            "output": _setting("output", "/data/news"),
            "date": "{{ ds }}",
            **EXTRA_OPTIONS,
        },
    )
