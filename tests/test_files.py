import subprocess
import sys


def test_processes_that_reach_an_empty_cache_at_once_fill_it_once(tmp_path):
    """The pattern of the tiny backbones' cache: under exclusive_lock, check, else fill (slowly), then save."""
    code = f"""
import time
from pathlib import Path
from nscl.files import atomic_write_text, exclusive_lock
entry, log = Path({str(tmp_path / "entry.txt")!r}), Path({str(tmp_path / "fills.log")!r})
with exclusive_lock(entry.with_suffix(".lock")):
    if not entry.exists():
        with open(log, "a") as f:
            f.write("fill\\n")
        time.sleep(0.5)  # a slow fill: the others must wait, not fill too
        atomic_write_text(entry, "weights")
print(entry.read_text())
"""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outputs == ["weights"] * 3
    assert (tmp_path / "fills.log").read_text().splitlines() == ["fill"]
