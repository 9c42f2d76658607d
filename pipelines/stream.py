"""`newsevents run --input kafka://HOST:PORT/TOPIC --output DIR --streaming ...`: the live stream.

Wiring only (`transforms.stream.StreamFromKafka` does the work). Runs until stopped: SIGINT or
SIGTERM cancels the job and exits 0. Days already committed stay as they are; a pane run cut
short leaves only staged files, which the next run's recovery finishes or discards (the
batch sink's manifest), so nothing half-written is visible.

The job reads as a Kafka consumer group, `--kafka-group` (default: one per output folder and
topic, `transforms.stream.default_group`), and commits the group's offsets itself, per
partition up to the first record not yet committed to its day or rejected. A new group starts
at the earliest offset; a restart with the same output and topic (or the same --kafka-group)
goes on from the committed offsets: records already committed are not read again, a record
that was still waiting in an open day window is. The few records read again (done after the
last offset commit, or done out of order above a waiting one) are left out by each day's
ledger (`transforms.stream`), so none is counted twice. A new --kafka-group (or a new output)
reads the topic from the start.
"""
from __future__ import annotations

import os
import signal
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

DEFAULT_EXPANSION = "localhost:8097"


class KafkaOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--kafka-expansion-service", "--kafka_expansion_service", dest="kafka_expansion_service",
                            default=None,
                            help="host:port of a Java expansion service with Beam's Kafka IO, started with "
                                 "EMBEDDED environments and the use_deprecated_read experiment "
                                 "(runners/kafka-flink.sh start; default $NEWSEVENTS_KAFKA_EXPANSION or "
                                 f"{DEFAULT_EXPANSION})")
        parser.add_argument("--kafka-group", "--kafka_group", dest="kafka_group", default=None,
                            help="Kafka consumer group whose committed offsets the stream reads from and "
                                 "commits to (default: newsevents-TOPIC-<hash of the output folder and "
                                 "topic>, so a restart into the same output goes on where the last job "
                                 "stopped; a new group starts at the earliest offset)")


# newsevents options a pane's batch run takes over from the stream's command line
PASSED_ON = ("--event-time", "--event_time", "--near", "--near-threshold", "--near_threshold",
             "--shingle-size", "--shingle_size")


def pane_run_args(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if name in PASSED_ON:
            if "=" in a:
                out.append(a)
            elif i + 1 < len(argv):
                out += [a, argv[i + 1]]
                i += 1
        i += 1
    return out


def is_stream(patterns: list[str]) -> bool:
    return any(p.startswith("kafka://") for p in patterns)


def build_stream(p: beam.Pipeline, options: PipelineOptions, argv: list[str]):
    from pipelines.news_events import NewsEventsOptions, UsageError
    from transforms.stream import StreamFromKafka, parse_kafka_uri
    from transforms.windowing import parse_duration

    opts = options.view_as(NewsEventsOptions)
    patterns = [x for group in (opts.input or []) for x in group]
    if len(patterns) != 1:
        raise UsageError("a Kafka input is read alone: one --input kafka://HOST:PORT/TOPIC")
    try:
        parse_kafka_uri(patterns[0])
        lateness = parse_duration(opts.allowed_lateness)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not options.view_as(StandardOptions).streaming:
        raise UsageError("a Kafka input needs --streaming")
    if not opts.output or "://" in opts.output:
        raise UsageError("a Kafka stream writes a local (or mounted) --output folder")
    expansion = (options.view_as(KafkaOptions).kafka_expansion_service
                 or os.environ.get("NEWSEVENTS_KAFKA_EXPANSION") or DEFAULT_EXPANSION)
    group = options.view_as(KafkaOptions).kafka_group
    if group is not None and not group.strip():
        raise UsageError("--kafka-group must not be empty")
    return p | "Stream" >> StreamFromKafka(patterns[0], os.path.abspath(opts.output), lateness, expansion,
                                           pane_run_args(argv), group_id=group)


def run_stream(argv: list[str], options: PipelineOptions):
    """Build and run until the job ends or SIGINT/SIGTERM cancels it; returns the result."""
    from pipelines.news_events import NewsEventsOptions, check_output

    check_output(options.view_as(NewsEventsOptions).output)
    p = beam.Pipeline(options=options)
    build_stream(p, options, argv)
    result = p.run()
    stopping = []

    def stop(signum, _frame):
        if not stopping:
            stopping.append(signum)
            print(f"newsevents: signal {signum}: cancelling the streaming job", file=sys.stderr)
            try:
                result.cancel()
            except Exception as e:  # already finished, or the job service is gone
                print(f"newsevents: cancel: {e}", file=sys.stderr)

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result.wait_until_finish()
    except Exception:
        if not stopping:
            raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return result
