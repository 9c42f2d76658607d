"""newsevents every day at 02:15 UTC from Airflow (2.4+ or 3.x): one run per day's drop.

The run for day D (`{{ ds }}`) starts on D+1 at 02:15 UTC and merges DROPS/D/ into the one output
dataset. The task runs newsevents in its own interpreter (NEWSEVENTS_PYTHON, a virtualenv with
newsevents and its pinned dependencies; Beam's dependencies conflict with Airflow's, so the two
are not installed together):

    NEWSEVENTS_PYTHON -m pipelines.news_events --input DROPS/{date} --output OUTPUT --date D \
        [--runner R] [--key=value for each NEWSEVENTS_BEAM_OPTIONS entry]

(`python -m pipelines.news_events` is `newsevents run`; newsevents replaces `{date}` by
`--date`). Only Airflow's core operators are used (PythonOperator): no provider package is
needed, for the local DirectRunner or for Flink, Spark or Dataflow (the runner options go to Beam).

What the schedule relies on (docs/scheduling.md): runs are idempotent and incremental, so
catch-up, backfill and "clear" reruns give the same rows as one run over every day; one run at a
time per output (`max_active_runs=1`). Exit status 75 (another run holds the output) is the only
failure retried (`retries`, `retry_delay`); a user error (exit 2) or a failed run (any other
status) fails the task at once, without retries: run it again (clear the task) once it is fixed.

The schedule is an explicit `CronDataIntervalTimetable`: a bare cron string means the day *of*
the run in Airflow 3 (`CronTriggerTimetable`) but the day *before* it in Airflow 2.

Settings. Airflow Variables, read when the task runs (a manual trigger's params override them):
    newsevents_drops     folder of the daily drop folders        default /data/drops
    newsevents_output    output dataset                          default /data/news
    newsevents_runner    DirectRunner, FlinkRunner, ...          default DirectRunner
Environment of the scheduler and workers, read when this file is parsed:
    NEWSEVENTS_PYTHON        interpreter with newsevents installed (default: `.venv/bin/python`
                             of the checkout this file is in, as the README's quick start makes it)
    NEWSEVENTS_START_DATE    first day of drops (default 2024-01-01): catch-up starts there
    NEWSEVENTS_BEAM_OPTIONS  JSON object of runner options added to every run, e.g.
                             {"flink_master": "jobmanager:8081", "environment_type": "EXTERNAL",
                              "environment_config": "localhost:50000"}
    NEWSEVENTS_LOCKED_RETRIES, NEWSEVENTS_LOCKED_RETRY_MINUTES  retries while the output is
                             locked (default 3, 10 minutes apart)
DataflowRunner also needs `project`, `region` and `temp_location` among the options
(runners/dataflow.md). Airflow 3 backfills have their own run limit:
`airflow backfill create --dag-id newsevents_daily --from-date ... --to-date ... --max-active-runs 1`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

from airflow.exceptions import AirflowException, AirflowFailException

try:  # Airflow 3
    from airflow.sdk import DAG, CronDataIntervalTimetable
    from airflow.providers.standard.operators.python import PythonOperator
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator
    from airflow.timetables.interval import CronDataIntervalTimetable

SCHEDULE = "15 2 * * *"  # 02:15 UTC, for the UTC day that ended at midnight
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_PYTHON = os.path.join(CHECKOUT, ".venv", "bin", "python")
PYTHON = os.environ.get("NEWSEVENTS_PYTHON") or DEFAULT_PYTHON
START_DATE = dt.datetime.fromisoformat(os.environ.get("NEWSEVENTS_START_DATE", "2024-01-01")).replace(
    tzinfo=dt.timezone.utc)
EXTRA_OPTIONS = json.loads(os.environ.get("NEWSEVENTS_BEAM_OPTIONS") or "{}")
LOCKED_RETRIES = int(os.environ.get("NEWSEVENTS_LOCKED_RETRIES", "3"))
LOCKED_RETRY_MINUTES = float(os.environ.get("NEWSEVENTS_LOCKED_RETRY_MINUTES", "10"))
EXIT_LOCKED = 75


def _setting(name: str, default: str) -> str:
    """Template: the trigger's param `name`, else Variable `newsevents_<name>`, else `default`."""
    return "{{ params.%s or var.value.get('newsevents_%s', %r) }}" % (name, name, default)


def command(python: str, drops: str, output: str, date: str, runner: str, extra: dict) -> list[str]:
    """The newsevents command line of one day's run."""
    argv = [python, "-m", "pipelines.news_events", "--input", drops.rstrip("/") + "/{date}",
            "--output", output, "--date", date]
    if runner:
        argv.append(f"--runner={runner}")
    return argv + [f"--{k}={v}" for k, v in extra.items()]


def run_newsevents(python: str, drops: str, output: str, date: str, runner: str, extra: dict) -> None:
    """Run one day; its output goes to the task log. Exit 75 raises a retryable error; any other
    failure fails the task without retries."""
    if not os.access(python, os.X_OK):
        raise AirflowFailException(f"NEWSEVENTS_PYTHON {python} is not an executable interpreter; "
                                   "set it to the python of the virtualenv newsevents is installed in")
    argv = command(python, drops, output, date, runner, extra)
    print("running:", " ".join(argv), flush=True)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # into the task log
        print(line.rstrip("\n"), flush=True)
    proc.wait()
    if proc.returncode == EXIT_LOCKED:
        raise AirflowException(f"output {output} is locked by another run (exit 75): retried later")
    if proc.returncode != 0:
        raise AirflowFailException(f"newsevents exited with status {proc.returncode} (not retried)")


with DAG(
    dag_id="newsevents_daily",
    description="news articles and live blogs of the day -> deduplicated day-partitioned events",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=START_DATE,
    catchup=True,  # a new or paused DAG runs every missed day, one at a time
    max_active_runs=1,  # runs on one output must not overlap
    default_args={
        "retries": LOCKED_RETRIES,  # used only for exit 75: other failures raise AirflowFailException
        "retry_delay": dt.timedelta(minutes=LOCKED_RETRY_MINUTES),
    },
    params={"drops": "", "output": "", "runner": ""},
    tags=["newsevents"],
    doc_md=__doc__,
) as dag:
    PythonOperator(
        task_id="newsevents_run",
        python_callable=run_newsevents,
        op_kwargs={
            "python": PYTHON,
            "drops": _setting("drops", "/data/drops"),
            "output": _setting("output", "/data/news"),
            "date": "{{ ds }}",
            "runner": _setting("runner", "DirectRunner"),
            "extra": EXTRA_OPTIONS,
        },
    )
