"""Speed of the attribution helpers (lessons 04-07), measured in one run on one image.

    python benchmarks/attribution.py                 # EfficientNet-Lite0, golden retriever photo
    python benchmarks/attribution.py --threads 1 --repeats 7

Prints, for the same image and the same settings:

1. occlusion: ``attribution.occlusion`` (all 1000 classes; by default incremental:
   each stage recomputed only where the patch changed its map; and ``method="full"``,
   every occluded image through the whole network, batch size measured by
   ``best_batch_size``) vs ``captum.attr.Occlusion`` for ONE class at its best
   ``perturbations_per_eval`` (measured here among 1, 2, 4, 8, 16). Target: ours at
   least 3x faster.
2. gradient methods: our saliency (gradient), guided backprop and Grad-CAM vs captum
   (Saliency, GuidedBackprop, LayerGradCam) and pytorch-grad-cam (GradCAM) vs a bare
   forward + ``torch.autograd.grad`` of the class score. Target: ours within 1.15x of
   the bare pass.

Timings are the minimum over ``--repeats`` interleaved runs (after a warm-up), the
most stable statistic on a shared machine; the median is printed too. ``--clock cpu``
measures this process's CPU time instead of wall time (with ``--threads 1`` it is
much steadier when other jobs share the CPU). The reference libraries get deep copies of the model (pytorch-grad-cam
calls ``model.eval()`` and ``zero_grad()`` on what it is given).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnnviz_helpers import load_model, sample_path, tune_allocator  # noqa: E402
from cnnviz_helpers import attribution as A  # noqa: E402

tune_allocator()  # as the lessons do: freed feature maps stay mapped (see benchmarks/NOTES.md)

warnings.filterwarnings("ignore")


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def timeit(fns: dict, repeats: int, clock: str = "wall") -> dict:
    """Interleaved timing: {name: (min, median)} seconds, one warm-up call each."""
    now = CLOCK[clock]
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = now()
            f()
            times[k].append(now() - t)
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--photo", default="golden retriever")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--skip-occlusion", action="store_true")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                    help="wall clock, or this process's CPU time (steadier on a shared machine with --threads 1)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import captum.attr as ca
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = load_model(args.model, weights="DEFAULT" if args.model.startswith("efficientnet") else None)
    x = model.preprocess(sample_path(args.photo))
    with torch.no_grad():
        c = int(model(x).argmax())
    print(f"model {model.name} on {model.device}, {torch.get_num_threads()} thread(s), {args.clock} clock, "
          f"image {tuple(x.shape)}, "
          f"class {c} '{model.label(c)}', torch {torch.__version__}")

    # ------------------------------------------------------------ occlusion
    if not args.skip_occlusion:
        ys, xs = A.occlusion_positions(tuple(x.shape[-2:]), args.window, args.stride)
        n = len(ys) * len(xs)
        t = time.perf_counter()
        bs = A.best_batch_size(model, tuple(x.shape[-2:]))
        t_bs = time.perf_counter() - t
        print(f"\n[occlusion] window {args.window}, stride {args.stride}: {n} positions; "
              f"best_batch_size measured {bs} in {t_bs:.1f} s (once per model and size)")
        base = torch.tensor(model.mean).view(1, 3, 1, 1)
        probs = lambda z: model(z).softmax(-1)  # noqa: E731
        cap_model = copy.deepcopy(model)
        cap_probs = lambda z: cap_model(z).softmax(-1)  # noqa: E731

        def captum_occ(ppe):
            with torch.no_grad():
                return ca.Occlusion(cap_probs).attribute(
                    x, sliding_window_shapes=(3, args.window, args.window), strides=(3, args.stride, args.stride),
                    target=c, baselines=base, perturbations_per_eval=ppe)

        ppes = {}
        for ppe in (1, 2, 4, 8, 16):
            t = time.perf_counter()
            captum_occ(ppe)
            ppes[ppe] = time.perf_counter() - t
        best_ppe = min(ppes, key=ppes.get)
        print("  captum, one run per perturbations_per_eval: "
              + ", ".join(f"{k}: {v:.2f} s" for k, v in ppes.items()) + f"  -> best {best_ppe}")
        chunk = 16
        res = timeit({
            "ours, incremental (all 1000 classes)": lambda: A.occlusion(
                model, x, window=args.window, stride=args.stride, batch_size=chunk, progress=False),
            "ours, full passes (all 1000 classes)": lambda: A.occlusion(
                model, x, window=args.window, stride=args.stride, batch_size=bs, method="full", progress=False),
            f"captum Occlusion (1 class, ppe={best_ppe})": lambda: captum_occ(best_ppe),
        }, max(1, args.repeats // 2), args.clock)
        ours = A.occlusion(model, x, window=args.window, stride=args.stride, batch_size=chunk, progress=False)
        full = A.occlusion(model, x, window=args.window, stride=args.stride, batch_size=bs, method="full",
                           progress=False)
        diff = float((ours.attribution(c) - captum_occ(best_ppe)[0, 0]).abs().max())
        diff_full = float((ours.probs - full.probs).abs().max())
        for k, (mn, md) in res.items():
            print(f"  {k:42s} min {mn:7.2f} s   median {md:7.2f} s")
        (inc, inc_md), (o, o_md), (cp, cp_md) = res.values()
        print(f"  method used by default: {ours.method}")
        print(f"  RATIO captum(1 class) / ours incremental(all classes) = min {cp / inc:.2f}x, median {cp_md / inc_md:.2f}x"
              f"   (target >= 3x)")
        print(f"  ratio captum(1 class) / ours full passes(all classes)  = min {cp / o:.2f}x, median {cp_md / o_md:.2f}x")
        print(f"  max |difference|: class map vs captum {diff:.1e}; all probabilities, incremental vs full {diff_full:.1e}")

    # ------------------------------------------------------------ gradient methods
    print("\n[gradient methods] one image, class score (logit)")
    layer = {"efficientnet_lite0": "block6", "alexnet": "conv5", "resnet18": "layer4"}.get(args.model, "block6")
    from cnnviz_helpers.layers import resolve_layer

    dotted, _ = resolve_layer(model, layer)
    loaded = copy.deepcopy(model)                       # parameters requiring grad, as load_model returns them
    frozen_m = copy.deepcopy(model)
    for p in frozen_m.parameters():
        p.requires_grad_(False)

    def bare(m):
        def f():
            xg = x.clone().requires_grad_(True)
            return torch.autograd.grad(m(xg)[0, c], xg)[0]
        return f

    cap_sal = ca.Saliency(copy.deepcopy(model))
    cap_gbp = ca.GuidedBackprop(copy.deepcopy(model))
    lgc_model = copy.deepcopy(model)
    cap_lgc = ca.LayerGradCam(lgc_model, lgc_model.get_submodule(dotted))
    pgc_model = copy.deepcopy(model)
    pgc = GradCAM(pgc_model, [pgc_model.get_submodule(dotted)])
    A.functional_relus(model, x)                        # traced once per model (cached), as in any session
    fns = {
        "bare forward+grad (params require grad)": bare(loaded),
        "bare forward+grad (params frozen)": bare(frozen_m),
        "ours: gradient (saliency)": lambda: A.gradient(model, x, c),
        "ours: guided backprop": lambda: A.guided_backprop(model, x, c),
        f"ours: Grad-CAM at {layer}": lambda: A.gradcam(model, x, c, layer),
        "captum Saliency": lambda: cap_sal.attribute(x.clone(), target=c, abs=False),
        "captum GuidedBackprop": lambda: cap_gbp.attribute(x.clone(), target=c),
        f"captum LayerGradCam at {layer}": lambda: cap_lgc.attribute(x.clone(), target=c, relu_attributions=True),
        f"pytorch-grad-cam GradCAM at {layer}": lambda: pgc(x.clone(), targets=[ClassifierOutputTarget(c)]),
    }
    res = timeit(fns, args.repeats, args.clock)
    bare_keys = ["bare forward+grad (params require grad)", "bare forward+grad (params frozen)"]
    floor = min(res[k][0] for k in bare_keys)            # the faster bare pass, by its minimum
    floor_md = min(res[k][1] for k in bare_keys)         # ... and by its median
    for k, (mn, md) in res.items():
        print(f"  {k:42s} min {mn * 1000:8.1f} ms   median {md * 1000:8.1f} ms   "
              f"ratio to bare: min {mn / floor:5.2f}x, median {md / floor_md:5.2f}x")
    print("  targets: ours within 1.15x of the faster bare pass")
    for k in [k for k in res if k.startswith("ours")]:
        r, r_md = res[k][0] / floor, res[k][1] / floor_md
        print(f"  RATIO {k:38s} min {r:5.2f}x  median {r_md:5.2f}x  "
              f"{'ok' if max(r, r_md) <= 1.15 else 'ABOVE TARGET'}")
    if model.name.startswith("efficientnet"):
        print("  note: captum's GuidedBackprop overrides nn.ReLU only; on this ReLU6 model it computes the plain "
              "gradient (its time is still a fair reference for the cost of a backward pass)")
    pgc.activations_and_grads.release()


if __name__ == "__main__":
    main()
