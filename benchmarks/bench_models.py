"""Training throughput and inference latency of every registered model (PyTorch eager, CPU or CUDA).

    python benchmarks/bench_models.py                       # all models, 2 threads
    python benchmarks/bench_models.py --models unet_lite,fcn8s_lite --runs 50 --json bench.json

Training: images/s of forward + backward + SGD step, batch 8 of 176x240 crops, channels_last.
Inference: batch 1 at 360x480, median of --runs timed passes after warm-up, channels_last.
Latency rounds are interleaved across models (A B C A B C ...): on 2-vCPU machines the second core is
intermittently contended, and interleaving spreads that over all models instead of biasing one.
Models above --slow-gflops (the VGG FCNs, the classic U-Net) get --slow-runs passes instead.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from edgeseg.models import create_model, list_models, model_stats
from edgeseg.runtime.errors import unknown_name
from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.sizes import parse_hw


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(name: str, num_classes: int, crop: tuple[int, int], batch: int, steps: int,
                     device: torch.device) -> float:
    """Images per second of full SGD steps (one untimed warm-up step first)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, *crop, device=device).contiguous(memory_format=torch.channels_last)  # (B,3,h,w)
    y = torch.randint(0, num_classes, (batch, *crop), device=device)  # (B, h, w)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all", help="comma-separated model names (default: all registered)")
    p.add_argument("--runs", type=int, default=30, help="timed inference passes per model")
    p.add_argument("--slow-runs", type=int, default=3, help="timed passes for models above --slow-gflops")
    p.add_argument("--slow-gflops", type=float, default=20.0)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--imgsz", default="360x480", help="inference HxW")
    p.add_argument("--crop", default="176x240", help="training crop HxW")
    p.add_argument("--batch", type=int, default=8, help="training batch")
    p.add_argument("--train-steps", type=int, default=8, help="timed SGD steps (slow models: 2)")
    p.add_argument("--no-train", action="store_true", help="latency only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num-classes", type=int, default=11)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, metavar="OUT")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = list_models() if args.models == "all" else [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if n not in list_models():
            raise SystemExit(f"error: {unknown_name('model', n, list_models())}")
    hw, crop = parse_hw(args.imgsz), parse_hw(args.crop, "--crop")

    stats = {n: model_stats(n, args.num_classes, hw) for n in names}
    quota = {n: args.slow_runs if stats[n].gflops > args.slow_gflops else args.runs for n in names}

    # Inference latency, interleaved rounds.
    models, times = {}, {n: [] for n in names}
    x = torch.randn(1, 3, *hw, device=device).contiguous(memory_format=torch.channels_last)  # (1, 3, H, W)
    with torch.inference_mode():
        for n in names:
            torch.manual_seed(0)
            models[n] = create_model(n, args.num_classes).to(device).to(memory_format=torch.channels_last).eval()
            for _ in range(args.warmup if quota[n] == args.runs else 1):
                models[n](x)
        for r in range(max(quota.values())):
            for n in names:
                if r < quota[n]:
                    _sync(device)
                    t0 = time.perf_counter()
                    models[n](x)
                    _sync(device)
                    times[n].append((time.perf_counter() - t0) * 1000)
    models.clear()

    rows = []
    for n in names:
        ips = None
        if not args.no_train:
            steps = 2 if quota[n] != args.runs else args.train_steps
            ips = train_throughput(n, args.num_classes, crop, args.batch, steps, device)
        t = sorted(times[n])
        rows.append({"model": n, "params_m": round(stats[n].params_m, 3), "gflops": round(stats[n].gflops, 2),
                     "latency_ms_median": round(statistics.median(t), 1), "latency_ms_min": round(t[0], 1),
                     "latency_runs": len(t), "train_images_per_s": None if ips is None else round(ips, 2)})
        r = rows[-1]
        print(f"{n:<11} {r['params_m']:>8.2f} M {r['gflops']:>8.2f} GFLOPs  latency median {r['latency_ms_median']:>8.1f} ms"
              f" (min {r['latency_ms_min']:.1f}, n={r['latency_runs']})  train "
              f"{'-' if ips is None else f'{ips:.2f}'} img/s", flush=True)

    env = {"torch": torch.__version__, "threads": args.threads, "device": str(device),
           "cpu": platform.processor() or platform.machine(), "imgsz": list(hw), "crop": list(crop),
           "batch": args.batch, "channels_last": True}
    print(f"torch {env['torch']}, {args.threads} threads, {device}, inference batch 1 at {hw[0]}x{hw[1]}, "
          f"training batch {args.batch} at {crop[0]}x{crop[1]}")
    if args.json:
        write_json(args.json, {"env": env, "models": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
