"""Set-up progress through :mod:`logging` (fmmloopy.base.progress)."""

import io
import logging
import time

import numpy as np

import fmmloopy
from fmmloopy.base import progress


def test_a_fast_stage_logs_at_debug_only(caplog):
    with caplog.at_level(logging.DEBUG, logger="fmmloopy"):
        with progress.stage("quick work"):
            pass
    records = [r for r in caplog.records if "quick work" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert records[-1].getMessage().startswith("quick work: ")


def test_a_slow_stage_is_reported_while_it_runs_and_when_it_ends(caplog, monkeypatch):
    monkeypatch.setattr(progress, "SLOW_STAGE_SECONDS", 0.05)
    with caplog.at_level(logging.INFO, logger="fmmloopy"):
        with progress.stage("slow work"):
            time.sleep(0.3)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert messages[0] == "slow work ... (still running after 0 s)"
    assert messages[1].startswith("slow work: ") and float(messages[1].split()[-2]) >= 0.3


def test_an_fmm_reports_its_set_up_stages(caplog):
    with caplog.at_level(logging.DEBUG, logger="fmmloopy"):
        fmm = fmmloopy.Fmm(np.random.default_rng(0).random((2000, 3)), order=4)
        fmm(np.ones((2000, 2)))
    finished = [r.getMessage() for r in caplog.records if r.getMessage().endswith(" s")]
    for stage in ("sorting 2000 sources", "operators of laplace at order 4", "the tree",
                  "interaction lists", "the plan:", "OpenCL builds",
                  "the plan of laplace x 2 vectors"):
        assert any(message.startswith(stage) for message in finished), stage


def test_show_progress_prints_info_once(monkeypatch):
    # Without a progress handler of an earlier test (the command line adds one in-process).
    monkeypatch.setattr(progress.LOGGER, "handlers", [
        h for h in progress.LOGGER.handlers if not getattr(h, "fmmloopy_progress", False)])
    stream = io.StringIO()
    handler = fmmloopy.show_progress(stream)
    try:
        assert fmmloopy.show_progress(io.StringIO()) is handler  # one handler however called
        monkeypatch.setattr(progress, "SLOW_STAGE_SECONDS", 0.0)
        with progress.stage("visible work"):
            pass
        assert "fmmloopy: visible work: " in stream.getvalue()
    finally:
        progress.LOGGER.removeHandler(handler)
