"""The whole course's cost: every lesson executed top to bottom, in full mode unless told otherwise.

For each lesson (or those named) this runs the notebook in a fresh kernel (nbclient), records
its wall time and the kernel's peak resident memory (``ru_maxrss`` read inside the kernel after
the last cell), and expresses the time in *bare steps*: one forward + backward of
EfficientNet-Lite0 at 224x224, batch 1, to the input, measured in the same run (median of
20 after 5 warm-up steps). The last line is

    TOTAL <seconds> s = <units> bare steps (<ratio> of 29600)

The lessons run with an empty runs cache (a fresh ``CNNVIZ_CACHE`` folder; only the decoded photos
are linked in from the usual one), so no earlier run's results are loaded. ``--cached`` then runs
every lesson a second time, the way an instructor's live run after ``prepare --lessons`` goes, and
adds a second column and the line

    CACHED TOTAL <seconds> s

29600 bare steps is the course's cost measured on a 2-core machine before the speed-up work
(issue 13: 1480 s at 50 ms a step); the target is a ratio of at most 0.5.

    python benchmarks/course.py                 # all thirteen lessons, full mode (about 25 min on 2 cores)
    python benchmarks/course.py 04 08           # only these lessons
    python benchmarks/course.py --quick         # quick mode (CNNVIZ_QUICK=1), as CI runs them
    python benchmarks/course.py --json out.json # also write the figures as JSON
    python benchmarks/course.py --cached        # and each lesson again, from the runs cache

The photos must be prepared (``python -m cnnviz_helpers prepare``) for the figures to be
comparable: the run says whether they are.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_STEPS = 29600
RSS_CELL = "import resource as _r, sys as _s; print('CNNVIZ_PEAK_RSS_KB', _r.getrusage(_r.RUSAGE_SELF).ru_maxrss)"


def bare_step_seconds(repeats: int = 20) -> float:
    """Median seconds of one Lite0 forward + backward to the input at 224x224 (batch 1)."""
    import torch

    from cnnviz_helpers import load_model, tune_allocator

    tune_allocator()
    model = load_model(device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(1, 3, 224, 224)
    times = []
    for i in range(5 + repeats):
        xi = x.clone().requires_grad_(True)
        t = time.perf_counter()
        model(xi)[0, 207].backward()
        if i >= 5:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_lesson(path: Path, quick: bool) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one lesson executed top to bottom in a fresh kernel."""
    from cnnviz_helpers.warm import execute_lesson

    t = time.perf_counter()
    nb = execute_lesson(path, quick=quick, extra=[RSS_CELL])
    seconds = time.perf_counter() - t
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    kb = int(text.split("CNNVIZ_PEAK_RSS_KB")[1].split()[0])
    return seconds, kb / 1024


def fresh_runs_cache() -> Path:
    """A new, empty CNNVIZ_CACHE folder for this run, with the decoded photos of the usual one linked in."""
    from cnnviz_helpers.dataset import runs_dir

    usual = runs_dir()
    fresh = Path(tempfile.mkdtemp(prefix="cnnviz-bench-cache-"))
    if (usual / "photos").is_dir():
        (fresh / "photos").symlink_to(usual / "photos", target_is_directory=True)
    os.environ["CNNVIZ_CACHE"] = str(fresh)  # every kernel inherits it
    return fresh


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    ap.add_argument("--quick", action="store_true", help="quick mode instead of full mode")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    ap.add_argument("--cached", action="store_true", help="then run each lesson again, from the runs cache")
    a = ap.parse_args(argv)
    files = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    if a.lessons:
        want = {s.removesuffix(".md") for s in a.lessons}
        unknown = want - {p.stem for p in files} - {p.name[:2] for p in files}
        if unknown:
            print(f"unknown lessons {sorted(unknown)}; valid: {', '.join(p.stem for p in files)}", file=sys.stderr)
            return 2
        files = [p for p in files if p.stem in want or p.name[:2] in want]
    from cnnviz_helpers.dataset import PhotoSet

    prepared = PhotoSet(size=224).cache_file.exists()
    step = bare_step_seconds()
    cache = fresh_runs_cache()
    mode = "quick" if a.quick else "full"
    print(f"mode {mode}; photos prepared: {'yes' if prepared else 'NO (run python -m cnnviz_helpers prepare)'}; "
          f"bare Lite0 forward+backward at 224: {step * 1000:.1f} ms; {os.cpu_count()} cores; "
          f"empty runs cache {cache}")
    print(f"{'lesson':<28} {'seconds':>8} {'bare steps':>11} {'peak RSS':>10}" + (f" {'cached s':>9}" if a.cached else ""))
    rows = []
    for path in files:
        seconds, rss = run_lesson(path, a.quick)
        row = {"lesson": path.stem, "seconds": round(seconds, 1), "bare_steps": round(seconds / step),
               "peak_rss_mb": round(rss)}
        line = f"{path.stem:<28} {seconds:>8.1f} {seconds / step:>11.0f} {rss:>8.0f} MB"
        if a.cached:
            again, _ = run_lesson(path, a.quick)
            row["cached_seconds"] = round(again, 1)
            line += f" {again:>9.1f}"
        rows.append(row)
        print(line, flush=True)
    total = sum(r["seconds"] for r in rows)
    units = total / step
    if a.json:
        a.json.write_text(json.dumps({"mode": mode, "bare_step_ms": round(step * 1000, 2), "prepared": prepared,
                                      "cores": os.cpu_count(), "lessons": rows}, indent=2) + "\n")
    print(f"TOTAL {total:.0f} s = {units:.0f} bare steps ({units / BASELINE_STEPS:.2f} of {BASELINE_STEPS})")
    if a.cached:
        print(f"CACHED TOTAL {sum(r['cached_seconds'] for r in rows):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
