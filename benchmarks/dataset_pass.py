"""Benchmark of the dataset pass of lessons 01 and 13 (``cnnviz_helpers.dataset``).

Measures, in one run, on the course photos:

1. decode + resize: JPEG decoding and resize/crop of every photo, alone (the
   pass's own thread pool, and one thread for reference);
2. forward: the model on the already-decoded photos, alone (same batch size);
3. our first pass: ``top_activations`` on a fresh ``PhotoSet`` with an empty
   cache (decoding in threads beside the forward passes where torch leaves cores
   free, else in the pass's own thread);
3b. our first pass of the same layers with the photos prepared: decoded once
   before (``python -m cnnviz_helpers prepare``, which ``make lab`` runs, or any
   earlier pass over the set), the results not cached: the forward passes, the
   ranking and reading the decoded photos;
4. a second pass: the same call again (served from the on-disk cache);
5. a redraw of lesson 01's explorer (crop 9 receptive-field patches, resize,
   mosaic, label, PNG), for many units of every layer.

Targets (issue 5): first pass <= 1.2 x max(decode, forward) (printed for both 3 and 3b); second pass
<= 5 s; redraw <= 150 ms. Prints the measured figures and ratios; asserts
nothing (timings depend on the machine and its load, printed too).

    CNNVIZ_DATA=/path/to/shared/data python benchmarks/dataset_pass.py            # 1000 photos
    python benchmarks/dataset_pass.py --photos 200 --layers block2 block4 head
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnviz_helpers import load_model, tune_allocator  # noqa: E402
from cnnviz_helpers.attribution import best_batch_size  # noqa: E402
from cnnviz_helpers.dataset import CACHE_ENV, PhotoSet, _default_workers, top_activations  # noqa: E402
from cnnviz_helpers.widgets import to_png  # noqa: E402

tune_allocator()  # as the lessons do: freed feature maps stay mapped (see benchmarks/NOTES.md)


def load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def lesson01_render(top, photos):
    """Lesson 01's own explorer code: the functions ``tiles``, ``mosaic`` and ``render`` (and the thumbnails
    they read), taken from the notebook's cells with ``ast`` (definitions and those assignments only, no
    plotting), so the benchmark times exactly what a slider move runs."""
    import ast

    import jupytext

    from cnnviz_helpers.models import imagenet_categories

    nb = jupytext.read(Path(__file__).resolve().parents[1] / "notebooks" / "01_max_activating_patches.md")
    keep_assign = {"THUMB", "images_u8", "thumbs"}
    body = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not any(k in cell.source for k in ("def tiles", "def render")):
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef)):
                body.append(node)
            elif isinstance(node, ast.Assign) and {getattr(t, "id", None) for t in node.targets} <= keep_assign:
                body.append(node)
    ns = {"top": top, "photos": photos, "categories": imagenet_categories(), "F": F, "np": np, "torch": torch}
    exec(compile(ast.Module(body=body, type_ignores=[]), "lesson01", "exec"), ns)
    if "render" not in ns or "tiles" not in ns:
        raise RuntimeError("lesson 01 no longer defines render/tiles: update benchmarks/dataset_pass.py")
    return lambda layer, unit: to_png(ns["render"](layer, unit), size=360)   # + the Explorer's PNG encoding


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=1000, help="number of course photos (first N classes)")
    ap.add_argument("--layers", nargs="+", default=["block2", "block3", "block4", "block5", "block6", "head"])
    ap.add_argument("--batch-size", type=int, default=None,
                    help="photos per forward pass (default: measured by best_batch_size, as the pass does)")
    ap.add_argument("--workers", type=int, default=None, help="decoding threads (default: the pass's default)")
    ap.add_argument("--redraws", type=int, default=30, help="explorer redraws timed per layer")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of measurements 1-3b")
    ap.add_argument("--one-thread", type=int, default=100, help="photos decoded in one thread (for reference)")
    args = ap.parse_args()

    cache = tempfile.mkdtemp(prefix="cnnviz-bench-")
    os.environ[CACHE_ENV] = cache                      # an empty results cache: the first pass is cold
    model = load_model()
    classes = list(range(args.photos))
    if args.batch_size is None:
        t = time.perf_counter()
        args.batch_size = best_batch_size(model, (model.input_size, model.input_size))
        print(f"best_batch_size: {args.batch_size} (measured in {time.perf_counter() - t:.1f} s, once per model)")
    print(f"{model.name} on {model.device}, {args.photos} photos, layers {args.layers}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}; {load()}")

    # untimed: file hashes checked and decoders warmed; the photos decoded once, for the forward-alone runs
    warm = PhotoSet(classes[:4])
    for i in range(len(warm)):
        warm.decode(i)
    one = PhotoSet(classes[: max(1, min(len(classes), args.one_thread))])
    decoded = PhotoSet(classes)
    imgs = decoded.decode_all(workers=args.workers, cache=False)
    dev = model.device

    def decode_alone() -> float:
        """1. decode + resize alone, as the pass does it (its threads; cache=False: nothing written)."""
        fresh = PhotoSet(classes)
        t = time.perf_counter()
        for _ in fresh.batches(args.batch_size, workers=args.workers, cache=False):
            pass
        return time.perf_counter() - t

    def forward_alone() -> float:
        """2. the model alone on the decoded photos, same batches and layout as the pass (one warm-up batch)."""
        with torch.no_grad():
            model(imgs[: args.batch_size].to(dev).float().div_(255).contiguous(memory_format=torch.channels_last))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for s in range(0, len(imgs), args.batch_size):
                model(imgs[s:s + args.batch_size].to(dev).float().div_(255)
                      .contiguous(memory_format=torch.channels_last))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t

    def first_pass(prepared: bool) -> tuple[float, dict]:
        """3. nothing cached (a fresh PhotoSet, empty cache); 3b. the photos prepared (decoded cache kept),
        the results not cached."""
        for sub in ("topk",) if prepared else ("topk", "photos"):
            shutil.rmtree(Path(cache) / sub, ignore_errors=True)
        photos = PhotoSet(classes)
        t = time.perf_counter()
        top = top_activations(model, args.layers, photos, k=9, batch_size=args.batch_size, workers=args.workers,
                              progress=False)
        return time.perf_counter() - t, top

    # the load of this machine varies: every measurement is repeated, in interleaved rounds
    runs: dict[str, list[float]] = {"decode": [], "forward": [], "cold": [], "prepared": []}
    for r in range(args.rounds):
        runs["decode"].append(decode_alone())
        runs["forward"].append(forward_alone())
        dt, top = first_pass(prepared=False)
        runs["cold"].append(dt)
        dt, top_p = first_pass(prepared=True)
        runs["prepared"].append(dt)
        assert all(torch.equal(top[n].images, top_p[n].images) for n in args.layers)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()) + f"; {load()}")
    t = time.perf_counter()
    for i in range(len(one)):
        one.decode(i)
    decode_1thread_s = (time.perf_counter() - t) * args.photos / len(one)
    best = {k: min(v) for k, v in runs.items()}
    med = {k: statistics.median(v) for k, v in runs.items()}

    # 4. a second pass, as a new session would run it: new PhotoSet object, results and photos from the cache
    photos2 = PhotoSet(classes)
    t = time.perf_counter()
    top2 = top_activations(model, args.layers, photos2, k=9, batch_size=args.batch_size, progress=False)
    _ = photos2.images
    second_s = time.perf_counter() - t
    assert all(torch.equal(top[n].images, top2[n].images) for n in args.layers)

    # 5. redraws of lesson 01's explorer, from memory
    redraw = lesson01_render(top2, photos2)
    times = {}
    rng = np.random.default_rng(0)
    for layer in args.layers:
        units = rng.choice(top2[layer].channels, size=min(args.redraws, top2[layer].channels), replace=False)
        ms = []
        for u in units:
            t = time.perf_counter()
            redraw(layer, int(u))
            ms.append((time.perf_counter() - t) * 1000)
        times[layer] = ms

    print()
    workers = _default_workers() if args.workers is None else args.workers
    print(f"decoding threads: {workers} (0: in the pass's own thread; default = cores torch leaves free)")
    print(f"{args.rounds} rounds; min (median) of each:")
    w = 48
    print(f"{f'decode + resize, {args.photos} photos, as the pass does':<{w}}: {best['decode']:6.2f} s "
          f"({med['decode']:.2f})   (one thread: {decode_1thread_s:.2f} s, from {len(one)} photos)")
    print(f"{f'forward, {args.photos} decoded photos':<{w}}: {best['forward']:6.2f} s ({med['forward']:.2f})")
    for k, what in (("cold", "our first pass, nothing cached"),
                    ("prepared", "our first pass, photos prepared (decoded cache)")):
        for stat, v in (("min", best), ("median", med)):
            slowest = max(v["decode"], v["forward"])
            lead = f"{what:<{w}}: {v[k]:6.2f} s" if stat == "min" else f"{'':<{w}}  ({v[k]:.2f} s)"
            print(f"{lead:<{w + 11}} {stat:>6}: {v[k] / (v['decode'] + v['forward']):.2f} x (decode + forward), "
                  f"{v[k] / slowest:.2f} x max(decode, forward)   [target <= 1.2]")
    print(f"{'second pass (from the cache, new session)':<48}: {second_s:6.2f} s   [target <= 5 s]")
    all_ms = [v for ms in times.values() for v in ms]
    print(f"explorer redraw: median {statistics.median(all_ms):.1f} ms, max {max(all_ms):.1f} ms   [target <= 150 ms]")
    for layer, ms in times.items():
        print(f"    {layer:7s} median {statistics.median(ms):6.1f} ms   max {max(ms):6.1f} ms   ({len(ms)} units)")
    print(load())


if __name__ == "__main__":
    main()
