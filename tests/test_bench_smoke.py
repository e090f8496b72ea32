"""The benchmark keeps working: a ~15 s smoke run of every phase writes its full JSON.

No timing assertions (this machine is shared); the targets live in `make bench` output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SUMMARY = {"requests_ok", "errors", "elapsed_s", "rps", "p50_ms", "p99_ms", "max_ms", "client_cpu"}
TARGETS = {
    "throughput_ratio>=0.6",
    "p99_at_200rps_minus_baseline<=1ms",
    "p99_at_1000rps_ratio<=1.5",
    "served_at_1000rps>=0.99",
    "burst_errors==0",
    "burst_time_ratio<=1.3",
    "cost_per_kb_vs_2k<=2",
    "rss_idle<=64MiB",
    "rss_peak<=128MiB",
    "soak_growth<5%",
}


def test_bench_smoke_writes_every_figure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert "smoke-latest.json" in written and len(written) == 2, written
    result = json.loads((tmp_path / "smoke-latest.json").read_text())

    assert result["mode"] == "smoke"
    assert 8 * 1024 <= result["review_bytes"] <= 15 * 1024
    for phase in ("throughput", "throughput_distinct", "rate_200", "rate_1000", "burst"):
        for side in ("webhook", "baseline"):
            summary = result[phase][side]
            assert SUMMARY <= summary.keys(), (phase, side, summary)
            assert summary["requests_ok"] > 0, (phase, side)
            # Every review the smoke sends is a well-formed pod CREATE: no request may fail.
            assert summary["errors"] == 0, (phase, side, summary)
    for key in ("rate_200", "rate_1000"):
        for side in ("webhook", "baseline"):
            assert 0 < result[key][side]["served_fraction"] <= 1
    for key in ("throughput", "throughput_distinct"):
        for side in ("webhook", "baseline"):
            assert result[key][side]["server_cpu_us_per_review"] > 0
    assert set(result["cost"]) == {"2k", "64k", "1m", "env1000"}
    sizes = {label: row["bytes"] for label, row in result["cost"].items()}
    assert sizes["2k"] < 4096 < 60 * 1024 < sizes["64k"] < sizes["1m"]
    assert sizes["1m"] >= 1024 * 1024
    for row in result["cost"].values():
        assert row["us_per_review"] > 0 and row["us_per_kb"] > 0 and row["per_kb_vs_2k"] > 0
    assert result["rss_idle_mib"] > 0 and result["rss_peak_mib"] >= result["rss_idle_mib"]
    assert result["soak"]["reviews"] >= 2000 and result["soak"]["errors"] == 0
    # Production settings: the JSON review log is on, one line per review.
    assert result["webhook_log_lines"] >= result["soak"]["reviews"]
    assert {"rss_before_mib", "rss_after_mib", "growth_pct"} <= result["soak"].keys()
    assert set(result["targets"]) == TARGETS
    for target in result["targets"].values():
        assert isinstance(target["met"], bool) and "value" in target
    assert {"cpu", "cores", "python", "commit"} <= result["machine"].keys()
    # The table names every figure.
    for label in ("throughput", "req/s over", "burst", "cost per review", "RSS idle", "soak"):
        assert label in run.stdout, label
