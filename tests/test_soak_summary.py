"""`bench soak`'s summary: growth from the first and last minute, not from two samples; the record
directory bounded by its limit and the slack of one prune interval."""
from __future__ import annotations

import os

from facetrack.bench_soak import _record_summary, _stack_pss, _summary, pss_uss_mb


def _samples(rss_of_t, anon_of_t=lambda t: 60.0):
    return [{"t_s": t, "rss_mb": {"tracker": rss_of_t(t)}, "anon_mb": {"tracker": anon_of_t(t)},
             "pid": {"tracker": 7}, "fps": {"tracker": 30.0}} for t in range(0, 1801, 5)]


def test_a_swing_in_the_last_sample_is_not_growth():
    flat_with_swings = _samples(lambda t: 150.0 if (1800 - t) % 255 < 10 else 125.0)  # the last sample in one
    (row,) = _summary(flat_with_swings, ["tracker"]).values()
    assert row["rss_start_mb"] == row["rss_end_mb"] == 125.0 and row["growth_pct"] == 0
    assert row["rss_max_mb"] == 150.0


def test_steady_growth_is_reported():
    leaking = _samples(lambda t: 100.0 + t / 60, lambda t: 50.0 + t / 60)  # 1 MB a minute, all heap
    (row,) = _summary(leaking, ["tracker"]).values()
    assert 28 < row["growth_mb"] < 31 and 28 < row["growth_pct"] < 31
    assert abs(row["growth_mb_per_hour"] - 60) < 0.5
    assert row["anon_start_mb"] < 51 and 56 < row["anon_growth_pct"] < 62


def test_the_record_directory_is_bounded_only_within_its_slack():
    samples = [{"record_mb": mb} for mb in (0.5, 1.9, 2.15, 2.0)]
    assert _record_summary(samples, 2.0, None) == {"limit_mb": 2.0, "max_mb": 2.15, "final_mb": 2.0, "bounded": True}
    samples.append({"record_mb": 2.3})  # more than one prune interval's writes over the limit
    assert _record_summary(samples, 2.0, None)["bounded"] is False


def test_pss_and_uss_of_a_real_process_lie_below_its_rss():
    """This process maps numpy's and Python's shared libraries: its USS (private pages) is below
    its PSS (shared pages split among their users), which is at most its RSS."""
    import psutil

    pss, uss = pss_uss_mb(os.getpid())
    rss = psutil.Process().memory_info().rss / 2**20
    assert 0 < uss < pss <= rss * 1.01


def test_the_stack_pss_is_the_sum_over_its_processes():
    samples = [{"t_s": t, "pss_mb": {"capture": 40.0, "detector": 100.0 + (t >= 100) * 10}} for t in range(0, 200, 5)]
    assert _stack_pss(samples) == {"pss_sum_start_mb": 140.0, "pss_sum_end_mb": 150.0, "pss_sum_max_mb": 150.0}
    (row,) = _summary([{**s, "rss_mb": {"detector": 200.0}, "pid": {"detector": 3}, "fps": {},
                        "uss_mb": {"detector": 80.0}} for s in samples], ["detector"]).values()
    assert row["pss_start_mb"] == 100.0 and row["pss_end_mb"] == 110.0 and row["uss_end_mb"] == 80.0
