"""edgeseg models: the bundled pretrained models (ready to run), then every registered architecture
with parameters, GFLOPs at an input size, and description (needs torch)."""

from __future__ import annotations

import argparse

HELP = "list bundled models and the architectures to train"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imgsz", default="360x480", help="input HxW the GFLOPs are counted at")
    p.add_argument("--num-classes", type=int, default=11, help="output classes (CamVid: 11)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the table as JSON")


def run(args: argparse.Namespace) -> int:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.fileio import write_json
    from edgeseg.runtime.sizes import parse_hw

    hw = parse_hw(args.imgsz)
    if args.num_classes < 1:
        raise UsageError(f"--num-classes must be >= 1, got {args.num_classes}")
    bundled = _print_bundled()
    try:
        import torch  # noqa: F401  (the architectures are torch modules)
    except ModuleNotFoundError:
        print("\narchitectures to train: need torch: pip install 'edgeseg[train]'")
        if args.json:
            write_json(args.json, {"bundled": bundled})
        return 0
    rows = _print_architectures(hw, args.num_classes)
    if args.json:
        write_json(args.json, {"bundled": bundled, "imgsz": list(hw), "num_classes": args.num_classes,
                               "models": rows})
    return 0


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> None:
    """Print ``rows`` (header first) in aligned columns, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        cells = [f"{c:>{w}}" if i in right else f"{c:<{w}}" for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def _print_bundled() -> list[dict]:
    from edgeseg.runtime.zoo import describe_models

    rows = describe_models()
    print("bundled models (run them by name: edgeseg predict NAME clip.mp4)")
    _table([("name", "file", "MB", "precision", "input", "stride", "mIoU", "evaluated on")]
           + [(r["name"] + (" (default)" if r["default"] else ""), r["file"], f"{r['size_mb']:.1f}", r["precision"],
               "x".join(map(str, r["input_size"])) or "any", str(r["output_stride"]),
               f"{r['miou']:.2f}" if r["miou"] is not None else "-", r["miou_split"] or "-") for r in rows],
           right=(2, 5, 6))
    return rows


def _print_architectures(hw: tuple[int, int], num_classes: int) -> list[dict]:
    from edgeseg.models import list_models, model_description
    from edgeseg.models.flops import model_stats

    print("\narchitectures (train one: edgeseg train --model NAME)")
    rows = []
    for name in list_models():
        stats = model_stats(name, num_classes, hw)  # meta device: no weights allocated
        rows.append({"name": name, "params_m": round(stats.params_m, 3), "gflops": round(stats.gflops, 2),
                     "gmacs": round(stats.macs / 1e9, 2), "description": model_description(name)})

    _table([("model", "params (M)", f"GFLOPs@{hw[0]}x{hw[1]}", "description")]
           + [(r["name"], f"{r['params_m']:.2f}", f"{r['gflops']:.2f}", r["description"]) for r in rows], right=(1, 2))
    print(f"GFLOPs = 2 x multiply-accumulates of Conv/ConvTranspose/Linear layers, batch 1, "
          f"{num_classes} classes, input padded to each model's stride.")
    return rows
