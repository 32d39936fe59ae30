"""Exported student in ONNX Runtime vs PyTorch eager on CPU, and student vs teacher sizes.

``python -m mlkd.bench export [--run RUN] [--student resnet18 --teacher resnet101]
[--img-size 224] [--classes 80] [--batches 1 32] [--repeats 5] [--threads T] [--json PATH]``

With ``--run`` the run's student is exported (``mlkd.export``, parity checked) and its
teacher is the checkpoint named by the run's ``distill.teacher`` (if any); otherwise randomly
initialised ``--student`` / ``--teacher`` networks with the paper's label-wise head are built.
Latency is the median over ``--repeats`` rounds (one warm-up round; ONNX Runtime and PyTorch
alternate within each round, order reversed every other round) of one forward of a batch;
throughput is batch / latency; the ratio is PyTorch latency / ONNX Runtime latency from the
same run. ONNX Runtime gets as many intra-op threads as torch. Sizes: parameters, MB of
float32 weights (and of the .onnx file), GFLOPs of one image (``torch.utils.flop_counter``,
multiply-add = 2 FLOPs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from mlkd.bench.common import bench_config, build_net, machine, median, parse_args, report


def model_size(net: torch.nn.Module, img_size: int) -> dict:
    """{params_M, weights_MB, gflops} of ``net`` (one image of img_size x img_size)."""
    params = sum(p.numel() for p in net.parameters())
    weight_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.rand(1, 3, img_size, img_size))
    return {
        "params_M": round(params / 1e6, 3),
        "weights_MB": round(weight_bytes / 2**20, 2),
        "gflops": round(counter.get_total_flops() / 1e9, 3),
    }


def _synthetic_student(name: str, img_size: int, num_classes: int, head: Optional[dict]):
    from mlkd.export.source import student_from_model

    cfg = bench_config(name, img_size, 1, "cpu", "off", False, head)
    net = build_net(name, cfg, num_classes, torch.device("cpu"), seed=0)
    return student_from_model(net, [f"c{k}" for k in range(num_classes)], cfg)


def _teacher_of_run(run: str, student) -> Optional[torch.nn.Module]:
    from mlkd.engine.builders import model_from_checkpoint

    path = student.config.distill.teacher
    if not path:
        return None
    return model_from_checkpoint(path, torch.device("cpu"))[0].reparameterize()


def bench_export(
    run: Optional[str] = None,
    student: str = "resnet18",
    teacher: Optional[str] = "resnet101",
    img_size: int = 224,
    num_classes: int = 80,
    batches: Sequence[int] = (1, 32),
    repeats: int = 5,
    head: Optional[dict] = None,
    out: Optional[Path] = None,
) -> dict:
    """{"latency": rows per (batch, runtime), "sizes": rows per model, "export": report}."""
    from mlkd.export.onnx_export import export_onnx, session
    from mlkd.export.source import fixed_batch, load_student

    if run:
        stud = load_student(run)
        teach, img_size = _teacher_of_run(run, stud), stud.img_size
        names = (stud.config.model.name, getattr(teach, "backbone_name", None))
    else:
        stud = _synthetic_student(student, img_size, num_classes, head)
        teach = None
        if teacher:
            cfg = bench_config(teacher, img_size, 1, "cpu", "off", False, head)
            teach = build_net(teacher, cfg, num_classes, torch.device("cpu"), seed=0).eval().reparameterize()
        names = (student, teacher)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(out or tmp) / "student.onnx"
        exported = export_onnx(stud, onnx_path)
        sess = session(onnx_path.read_bytes(), torch.get_num_threads())
    latency = []
    for batch in batches:
        images = fixed_batch(batch, img_size)
        feeds = {"images": images.numpy()}

        def run_torch(images=images):
            with torch.no_grad():
                stud.net(images)

        def run_onnx(feeds=feeds):
            sess.run(None, feeds)

        runners = [("pytorch eager", run_torch), ("onnxruntime", run_onnx)]
        seconds: dict[str, list[float]] = {name: [] for name, _ in runners}
        for r in range(1 + repeats):
            for name, fn in runners if r % 2 == 0 else runners[::-1]:
                start = time.perf_counter()
                fn()
                if r:
                    seconds[name].append(time.perf_counter() - start)
        base = median(seconds["pytorch eager"])
        for name, _ in runners:
            s = median(seconds[name])
            latency.append(
                {
                    "batch": batch,
                    "runtime": name,
                    "ms": round(1e3 * s, 3),
                    "images_per_s": round(batch / s, 1),
                    "speedup_vs_eager": round(base / s, 2),
                }
            )
    sizes = [
        {
            "role": "student",
            "model": names[0],
            **model_size(stud.net, img_size),
            "onnx_MB": round(exported["bytes"] / 2**20, 2),
        }
    ]
    if teach is not None:
        sizes.append({"role": "teacher", "model": names[1], **model_size(teach, img_size), "onnx_MB": None})
    return {
        "latency": latency,
        "sizes": sizes,
        "img_size": img_size,
        "threads": torch.get_num_threads(),
        "export": {k: exported[k] for k in ("opset", "max_abs_logit_diff", "max_abs_probability_diff")},
    }


def format_tables(result: dict) -> str:
    lines = ["| batch | runtime | ms / batch (median) | images/s | vs PyTorch eager |", "|---:|---|---:|---:|---:|"]
    for r in result["latency"]:
        lines.append(
            f"| {r['batch']} | {r['runtime']} | {r['ms']:.2f} | {r['images_per_s']:.1f} "
            f"| {r['speedup_vs_eager']:.2f}x |"
        )
    lines += [
        "",
        "| role | model | params (M) | weights (MB) | .onnx (MB) | GFLOPs / image |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["sizes"]:
        onnx_mb = "-" if r["onnx_MB"] is None else f"{r['onnx_MB']:.2f}"
        lines.append(
            f"| {r['role']} | {r['model']} | {r['params_M']:.2f} | {r['weights_MB']:.2f} | {onnx_mb} "
            f"| {r['gflops']:.2f} |"
        )
    e = result["export"]
    lines += [
        "",
        f"ONNX opset {e['opset']}; parity on the fixed batches: max |logit diff| "
        f"{e['max_abs_logit_diff']:.3g}, max |probability diff| {e['max_abs_probability_diff']:.3g}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlkd bench export", description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run folder or checkpoint (default: random --student / --teacher)")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--teacher", default="resnet101", help="'' for none")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parse_args(parser, argv)
    result = bench_export(
        args.run, args.student, args.teacher or None, args.img_size, args.classes, args.batches, args.repeats
    )
    source = f"run {args.run}" if args.run else f"random {args.student} / {args.teacher or '-'}"
    return report(
        f"Exported student: ONNX Runtime vs PyTorch eager (CPU), {source}, {result['img_size']}px, "
        f"median of {args.repeats} rounds ({machine('cpu')})",
        format_tables(result),
        result,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
