"""One source for the live figures: the HUD, the status lines and the web view say the same numbers."""

from __future__ import annotations

import pytest

from edgeseg.cli.demo_cmd import _live_figures
from edgeseg.cli.predict_cmd import status_fields
from edgeseg.runtime.render import hud_lines
from edgeseg.runtime.stats import PipelineStats


def test_nothing_measured_yet_says_so_everywhere() -> None:
    s = PipelineStats()
    assert s.live() == {"fps": 0.0, "infer_ms": None, "latency_p50_ms": None, "latency_p99_ms": None}
    assert "infer -" in s.status_line() and "latency -" in hud_lines(s)
    assert _live_figures([("cam0", s)])["cameras"][0]["latency_p99_ms"] is None
    assert set(status_fields(s)) == {"fps"}


def test_every_display_shows_the_same_figures() -> None:
    s = PipelineStats()
    for ms in (10.0, 10.0, 10.0, 12.0):
        s.latency["infer"].add(ms)
    for ms in [20.0] * 98 + [40.0] * 2:
        s.capture_to_render.add(ms)
    f = s.live()
    assert f["infer_ms"] == pytest.approx(10.0, rel=0.02) and f["latency_p50_ms"] == pytest.approx(20.0, rel=0.02)
    assert f["latency_p99_ms"] == pytest.approx(40.0, rel=0.02)
    assert "infer 10.0 ms" in s.status_line() and "latency p50 20 p99 40 ms" in s.status_line()
    assert "latency 20 ms (p99 40)" in hud_lines(s)
    web = _live_figures([("front", s)])["cameras"][0]
    assert (web["name"], web["infer_ms"], web["latency_p99_ms"]) == ("front", round(f["infer_ms"], 1),
                                                                   round(f["latency_p99_ms"], 1))
    assert status_fields(s)["lat_p99_ms"] == round(f["latency_p99_ms"], 1)
