"""Elastic restarts under torchrun: a killed worker, the group restarted, the job resumed, the same losses.

bench/elastic_restarts.py repeats this (15 times per rendezvous in the closing notes); here once each.
"""

from __future__ import annotations

import sys

import pytest
from harness import REPO

sys.path.insert(0, str(REPO))

from bench import elastic_restarts  # noqa: E402


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    work = tmp_path_factory.mktemp("elastic")
    proc = elastic_restarts.run(
        work / "reference", work / "cache", rendezvous="static", kill=False, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = elastic_restarts.losses(work / "reference")
    assert len(expected) == elastic_restarts.STEPS
    return work, expected


@pytest.mark.parametrize("rendezvous", elastic_restarts.RENDEZVOUS)
def test_a_killed_worker_is_restarted_and_the_run_resumes_to_the_same_losses(uninterrupted, rendezvous):
    work, expected = uninterrupted
    out = work / rendezvous
    proc = elastic_restarts.run(out, work / "cache", rendezvous=rendezvous, kill=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert elastic_restarts.RESTARTED in output, output[-4000:]
    assert f"resumed from {out}/checkpoints/step_10 (step 10" in output
    assert "removing the stale lock of a job that is gone" in output  # the killed rank 0 held it
    assert elastic_restarts.losses(out) == expected
