"""edgeseg models: every registered model with parameters, GFLOPs at an input size, and description."""

from __future__ import annotations

import argparse

HELP = "list registered models with parameters and GFLOPs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imgsz", default="360x480", help="input HxW the GFLOPs are counted at")
    p.add_argument("--num-classes", type=int, default=11, help="output classes (CamVid: 11)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the table as JSON")


def run(args: argparse.Namespace) -> int:
    from edgeseg.models import list_models, model_description
    from edgeseg.models.flops import model_stats
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.fileio import write_json
    from edgeseg.runtime.sizes import parse_hw

    hw = parse_hw(args.imgsz)
    if args.num_classes < 1:
        raise UsageError(f"--num-classes must be >= 1, got {args.num_classes}")
    rows = []
    for name in list_models():
        stats = model_stats(name, args.num_classes, hw)  # meta device: no weights allocated
        rows.append({"name": name, "params_m": round(stats.params_m, 3), "gflops": round(stats.gflops, 2),
                     "gmacs": round(stats.macs / 1e9, 2), "description": model_description(name)})

    header = ("model", "params (M)", f"GFLOPs@{hw[0]}x{hw[1]}", "description")
    table = [header] + [(r["name"], f"{r['params_m']:.2f}", f"{r['gflops']:.2f}", r["description"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for i, row in enumerate(table):
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}")
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * len(header[3]))
    print(f"GFLOPs = 2 x multiply-accumulates of Conv/ConvTranspose/Linear layers, batch 1, "
          f"{args.num_classes} classes, input padded to each model's stride.")
    if args.json:
        write_json(args.json, {"imgsz": list(hw), "num_classes": args.num_classes, "models": rows})
    return 0
