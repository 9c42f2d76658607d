"""Unknown or misspelled options are a usage error (exit 2, one line), not a run with defaults;
Beam's own options still pass through to Beam."""
from __future__ import annotations

import pytest

from pipelines.cli import main
from pipelines.news_events import UsageError, check_arguments, pipeline_options

from .conftest import REPO

SAMPLE = REPO / "sample" / "input"


@pytest.mark.parametrize("extra, message", [
    (["--near-treshold", "0.9"], "unknown option --near-treshold (did you mean --near-threshold?)"),
    (["--near-treshold=0.9"], "unknown option --near-treshold (did you mean --near-threshold?)"),
    (["--formt", "jsonl"], "unknown option --formt (did you mean --format?)"),
    (["--runnr=FlinkRunner"], "unknown option --runnr (did you mean --runner?)"),
    (["stray"], "unexpected argument 'stray' (options start with --)"),
    (["--shards", "many"], "argument --shards: invalid int value: 'many'"),
])
def test_misspelled_option_is_exit_2_with_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["run", "--input", str(SAMPLE), "--output", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err == f"newsevents: error: {message}\n"
    assert not out.exists()  # refused before anything was written


def test_beam_options_pass_through():
    argv = ["--input", "x", "--output", "y", "--runner=PortableRunner", "--job_endpoint=embed",
            "--direct_num_workers", "2", "--direct_running_mode=multi_processing", "--environment_type=LOOPBACK",
            "--environment_config=localhost:50000", "--flink_master=localhost:8081", "--flink_version=1.19",
            "--spark_master_url=local[2]", "--parallelism=2", "--s3_endpoint_url=http://127.0.0.1:9000",
            "--temp_location=/tmp", "--project=p", "--region=r", "--experiments=use_runner_v2", "--streaming",
            "--near-threshold", "0.8", "--near_threshold=0.8", "--allowed-lateness=3d"]
    check_arguments(argv)
    options = pipeline_options(argv).get_all_options()
    assert options["flink_master"] == "localhost:8081" and options["job_endpoint"] == "embed"
    assert options["direct_num_workers"] == 2 and options["environment_type"] == "LOOPBACK"
    assert options["near_threshold"] == 0.8


def test_check_arguments_is_silent_for_a_plain_run():
    check_arguments(["--input", "a", "--input", "b", "c", "--output", "o", "--date", "2024-03-05"])
    with pytest.raises(UsageError):
        check_arguments(["--input", "a", "--output", "o", "--dte=2024-03-05"])


@pytest.mark.parametrize("args, message", [
    ([], "--input is required"),
    (["--input", str(SAMPLE), "--format", "xml"], "--format must be one of"),
    (["--input", str(SAMPLE), "--near-threshold", "2"], "--near-threshold must be in (0, 1], not 2.0"),
    (["--input", str(SAMPLE), "--shards", "0"], "--shards must be at least 1"),
    (["--input", str(SAMPLE), "--event-time", "never"], "--event-time must be text or published"),
    (["--input", "no/such/input"], "input not found: no/such/input"),
])
def test_a_refused_run_leaves_no_output_folder(tmp_path, capsys, args, message):
    """preflight refuses before it probes the output (the probe creates the folder)."""
    out = tmp_path / "out"
    assert main(["run", *args, "--output", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
