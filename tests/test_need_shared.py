"""`need_shared`: without ../shared/data a test skips, except under CI=true, where it fails."""
from __future__ import annotations

import pytest

from .conftest import need_shared


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_missing_shared_data_fails_under_ci(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="real data not found"):
        need_shared(tmp_path / "missing")


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_missing_shared_data_skips_elsewhere(tmp_path, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="real data not found"):
        need_shared(tmp_path / "missing")


def test_present_shared_data_is_returned(tmp_path):
    assert need_shared(tmp_path) == tmp_path
