"""`LocalRunner`: Beam's DirectRunner without its attempt at Prism, so nothing is downloaded.

Beam 2.77's `DirectRunner` (`SwitchingDirectRunner`) first tries to run a pipeline on the
Prism runner, downloading the Prism binary from GitHub into `~/.apache_beam/cache/prism` when
none is cached, and falls back to its in-process engines only when that fails. Offline the
download fails at once and the fallback hides it (one INFO log line); with network access the
same command runs the pipeline on Prism, another engine.

`LocalRunner` makes the choice `DirectRunner` makes after Prism, and nothing else: the
FnApiRunner (in this process, or `--direct_num_workers` worker processes with
`--direct_running_mode=multi_processing`), or the BundleBasedDirectRunner for what the
FnApiRunner cannot run (TestStream, Pub/Sub, real-time timers). Use it as
`--runner=runners.direct.LocalRunner`.
"""
from __future__ import annotations

import itertools

from apache_beam.internal.util import ArgumentPlaceholder
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.runner import PipelineRunner
from apache_beam.transforms import userstate
from apache_beam.transforms.core import CombineValuesDoFn, ParDo
from apache_beam.transforms.timeutil import TimeDomain


class _FnApiSupport(PipelineVisitor):
    """The FnApiRunner's limits, as `SwitchingDirectRunner` checks them (Beam 2.77)."""

    def __init__(self):
        from apache_beam.io.gcp.pubsub import ReadFromPubSub, WriteToPubSub
        from apache_beam.testing.test_stream import TestStream

        self._pubsub = (ReadFromPubSub, WriteToPubSub)
        self._test_stream = TestStream
        self.supported = True

    def enter_composite_transform(self, applied):
        if isinstance(applied.transform, self._pubsub):
            self.supported = False

    def visit_transform(self, applied):
        transform = applied.transform
        if isinstance(transform, self._test_stream):
            self.supported = False
        if isinstance(transform, ParDo):
            dofn = transform.dofn
            if isinstance(dofn, CombineValuesDoFn):
                args, kwargs = transform.raw_side_inputs
                if any(isinstance(a, ArgumentPlaceholder) for a in itertools.chain(args, kwargs.values())):
                    self.supported = False
            if userstate.is_stateful_dofn(dofn):
                _, timers = userstate.get_dofn_specs(dofn)
                if any(t.time_domain == TimeDomain.REAL_TIME for t in timers):
                    self.supported = False


class LocalRunner(PipelineRunner):
    """Runs on this machine with Beam's own engines; never Prism, never a download."""

    def is_fnapi_compatible(self):
        return BundleBasedDirectRunner.is_fnapi_compatible()

    def run_pipeline(self, pipeline, options):
        support = _FnApiSupport()
        pipeline.visit(support)
        if not support.supported:
            return BundleBasedDirectRunner().run_pipeline(pipeline, options)
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        # as DirectRunner does: workers in other processes get the options (FileSystems, ...)
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)
