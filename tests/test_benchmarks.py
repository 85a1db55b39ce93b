"""Every script the README names runs here on a tiny setting, so it cannot rot unnoticed."""
import json
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.e2e


def test_mrd_throughput_benchmark_ends_with_its_json_line():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mrd_throughput.py"), "--samples", "8", "--K", "2",
                           "--hidden", "16", "--layers", "1", "--threads", "1", "--batch-size", "4"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"overhead_ratio", "speedup_vs_naive"} <= set(result)
    assert result["overhead_ratio"] > 0 and result["speedup_vs_naive"] > 0
