"""Speed of the course's optimization loop (lessons 08-12), in ms per step.

Compares, on the same model and image size (batch 1):

1. bare: a hand-written step, ``logits = model(x); (-logits[c]).backward(); adam.step(); x.clamp_(0, 1)``,
   model in eval mode with frozen parameters (the fair baseline);
2. ``optimize(model, class_logit(c), pixels)``: the course loop, same work (target: <= 1.2x bare);
3. ``optimize(..., progress=True)``: the same with its tqdm bar;
4. ``optimize(model, channel("block4", 0), pixels)``: an objective on an inner layer, for which the
   loop stops the forward pass after that layer (so it can be *faster* than bare);
5. FFT + decorrelated parameterization: ours vs Lucent's ``render_vis`` (torch-lucent) with the same
   parameterization, objective, Adam lr and no transforms, if Lucent can be imported. Lucent hooks
   every module and never removes its hooks, so it runs on a fresh copy of the model each time.

Steps are timed in interleaved rounds (each method runs once per round) and the median
per-step time over rounds is reported, which makes the ratios robust on a shared machine.

    python benchmarks/optimize.py                 # EfficientNet-Lite0, 224 px, CPU/GPU as available
    python benchmarks/optimize.py --size 128 --steps 10 --rounds 5 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import io
import statistics
import sys
import time
from contextlib import redirect_stderr

import torch

from cnnviz_helpers import load_model, tune_allocator
from cnnviz_helpers import objectives as obj
from cnnviz_helpers import params
from cnnviz_helpers.optimize import optimize

tune_allocator()  # as the lessons do: freed feature maps stay mapped (see benchmarks/NOTES.md)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare(model, size, steps, c, device):
    x = torch.full((1, 3, size, size), 0.5, device=device, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        (-model(x)[0, c]).backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    _sync(device)
    return (time.perf_counter() - t) / steps


def ours(model, size, steps, objective, device, *, progress=False, fft=False):
    p = params.fft(size, device=device) if fft else params.pixels(size, device=device)
    _sync(device)
    t = time.perf_counter()
    with redirect_stderr(io.StringIO()):           # the tqdm bar is drawn (and timed) but not shown
        optimize(model, objective, p, steps=steps, lr=0.05, progress=progress)
    _sync(device)
    return (time.perf_counter() - t) / steps


def lucent_fn():
    """Lucent's render_vis on the course model (FFT + decorrelated, no transforms), or None if unavailable."""
    try:
        from lucent.optvis import param as lparam
        from lucent.optvis import render
        from lucent.optvis import objectives as lobj
    except Exception as e:  # ImportError, or kornia incompatibilities
        return None, f"{type(e).__name__}: {e}"

    def run(model, size, steps, c, device):
        # Lucent hooks every module and never removes the hooks: give it a fresh copy each time, so that
        # neither our timings nor its later runs pay for hooks left behind (copying is not timed)
        model = copy.deepcopy(model)
        _sync(device)
        t = time.perf_counter()
        render.render_vis(model, lobj.channel("net__fc", c), lambda: lparam.image(size, fft=True, decorrelate=True),
                          transforms=[], thresholds=(steps,), preprocess=False, progress=False, show_image=False)
        _sync(device)
        return (time.perf_counter() - t) / steps

    return run, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed run")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    device = model.device
    for p in model.parameters():       # the fair baseline: frozen weights, eval mode (as inside optimize)
        p.requires_grad_(False)
    model.eval()
    c = 130
    lucent_run, lucent_err = lucent_fn()
    methods = {
        "bare forward+backward+Adam": lambda: bare(model, args.size, args.steps, c, device),
        "optimize (class logit)": lambda: ours(model, args.size, args.steps, obj.class_logit(c), device),
        "optimize + tqdm bar": lambda: ours(model, args.size, args.steps, obj.class_logit(c), device, progress=True),
        "optimize (channel block4, early stop)": lambda: ours(model, args.size, args.steps, obj.channel("block4", 0), device),
        "optimize (FFT param)": lambda: ours(model, args.size, args.steps, obj.class_logit(c), device, fft=True),
    }
    if lucent_run is not None:
        methods["Lucent render_vis (FFT param)"] = lambda: lucent_run(model, args.size, args.steps, c, device)
    for f in methods.values():          # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(args.rounds):
        for k, f in methods.items():
            times[k].append(f())
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    base = med["bare forward+backward+Adam"]
    print(f"model {args.model}, {args.size}x{args.size}, batch 1, device {device}, torch threads "
          f"{torch.get_num_threads()}, {args.steps} steps x {args.rounds} interleaved rounds (median)")
    print(f"{'method':40s} {'ms/step':>9s} {'vs bare':>8s}  (min..max ms over rounds)")
    for k in methods:
        lo, hi = min(times[k]) * 1000, max(times[k]) * 1000
        print(f"{k:40s} {med[k]:9.1f} {med[k] / base:7.2f}x  ({lo:.1f}..{hi:.1f})")
    ratio = med["optimize (class logit)"] / base
    print(f"\nloop overhead: optimize / bare = {ratio:.3f} (target <= 1.2): {'OK' if ratio <= 1.2 else 'ABOVE TARGET'}")
    if lucent_run is not None:
        print(f"ours (FFT) / Lucent render_vis (FFT) = "
              f"{med['optimize (FFT param)'] / med['Lucent render_vis (FFT param)']:.3f}")
    else:
        print(f"Lucent: not available ({lucent_err}). torch-lucent 0.1.8 pins kornia<=0.4.1; "
              f"`pip install torch-lucent` resolves with current torch, or add it to PYTHONPATH.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
