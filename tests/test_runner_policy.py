"""No step knows its runner; the launcher chooses the local policies once, before wiring; the
local runner is Beam's own DirectRunner, and it never reaches for Prism (a download)."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from .conftest import REPO, query, run_pipeline

# a runner's name as a word of the code: DirectRunner, FlinkRunner, "direct", "spark", ...
RUNNER_WORDS = re.compile(r"\b(\w*runner\w*|direct|flink|spark|dataflow|prism|portable|fnapi\w*|bundlebased\w*)\b")


def code_without_docs(path: Path) -> str:
    """The module's code tokens: no comments, no docstrings (prose may name runners)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add((first.lineno, first.col_offset))
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start in docstrings):
            continue
        out.append(tok.string)
    return " ".join(out).lower()


def test_the_runner_check_sees_names():
    assert RUNNER_WORDS.findall('x = "DirectRunner" if directory else "flink"'.lower()) == ["directrunner", "flink"]


def test_no_step_knows_its_runner():
    modules = sorted((REPO / "transforms").rglob("*.py"))
    assert len(modules) > 5
    for path in modules:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("apache_beam.runners"), f"{path.name} imports {node.module}"
                assert "StandardOptions" not in [a.name for a in node.names], f"{path.name} reads the runner option"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("apache_beam.runners"), f"{path.name} imports {alias.name}"
        named = RUNNER_WORDS.findall(code_without_docs(path))
        assert named == [], f"{path.name} names a runner in its code: {named}"


def test_test_pipelines_run_on_the_production_engine():
    """TestPipeline's default runner is the one `newsevents run` uses: Beam's DirectRunner."""
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner

    from pipelines.news_events import is_direct_runner, pipeline_options

    assert isinstance(TestPipeline().runner, SwitchingDirectRunner)
    assert is_direct_runner(pipeline_options(["--input", "x", "--output", "y"]))
    assert not is_direct_runner(pipeline_options(["--input", "x", "--output", "y", "--runner", "FlinkRunner"]))


@pytest.fixture
def no_prism(monkeypatch):
    """Fails the test if Beam tries its Prism runner (which downloads a binary)."""
    from apache_beam.runners.portability import prism_runner

    tried = []

    def refuse(self, *args, **kwargs):
        tried.append(args)
        raise AssertionError("Beam's DirectRunner tried Prism")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    return tried


def test_direct_runner_runs_the_pipeline_without_prism(no_prism, tmp_path):
    run_pipeline([REPO / "sample" / "input"], tmp_path / "out")
    assert no_prism == []
    (n,) = query(tmp_path / "out", "SELECT count(*) FROM events")[0]
    assert n > 0


def test_direct_runner_runs_a_test_pipeline_without_prism(no_prism):
    with TestPipeline() as p:
        assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))
    assert no_prism == []


def test_the_launcher_chooses_spill_once_before_wiring(tmp_path):
    """`--spill auto`: on with the DirectRunner, off with any other runner; `on`/`off` as given.
    The choice is in the plan the steps are built from; the options are not changed after."""
    from pipelines.news_events import pipeline_options, preflight

    (tmp_path / "in.jsonl").write_text('{"article_id": "a", "published_at": 0, "text": "x"}\n')
    base = ["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--run_token", "t"]
    assert preflight(pipeline_options(base)).spill == str(tmp_path / "out" / "_staging" / "t" / "spill")
    for runner in ("FlinkRunner", "SparkRunner", "PortableRunner", "DataflowRunner"):
        assert preflight(pipeline_options(base + ["--runner", runner])).spill is None, runner
    assert preflight(pipeline_options(base + ["--runner", "FlinkRunner", "--spill", "on"])).spill is not None
    assert preflight(pipeline_options(base + ["--spill", "off"])).spill is None
