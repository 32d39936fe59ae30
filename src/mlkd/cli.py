"""The ``mlkd`` command: parses arguments, builds a Config, calls the API. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

from mlkd.errors import EXIT_PREEMPTED, ConfigError, MLKDError, Preempted, shorten

log = logging.getLogger("mlkd")

MESSAGE_LIMIT = 2000  # the longest error line printed
OVERRIDES_HELP = "config overrides as key.sub=value (e.g. optim.lr=3e-4 data.batch_size=32)"


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="experiment YAML file (defaults when omitted)")
    parser.add_argument("--resume", action="store_true", help="continue run_dir from its last good checkpoint")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (file + overrides + defaults) as YAML and exit",
    )
    parser.add_argument(
        "--dry-run",
        "-n",
        action="store_true",
        help="validate and resolve the config, say what would run; build and write nothing",
    )
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)


def _run_config(args):
    """The validated config of ``mlkd train`` / ``mlkd distill`` (file, overrides, --method, --teacher),
    its named choices checked (no data, model or folder is made)."""
    from mlkd.config import load_config
    from mlkd.engine.checks import check_config

    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"distill.method={args.method}")
    if getattr(args, "teacher", None):
        overrides.append(f"distill.teacher={args.teacher}")
    cfg = load_config(args.config, overrides)
    check_config(cfg)
    return cfg


def _plan_text(cfg, command: str, resume: bool) -> str:
    from mlkd.losses.methods import method_weights

    d = cfg.distill
    weights = ", ".join(f"{name} {weight:g}" for name, weight in method_weights(d.method, d.weights).items())
    lines = [
        f"mlkd {command} (dry run): nothing was built or written",
        f"  run folder: {cfg.run_dir}" + (" (resumed from its last checkpoint)" if resume else ""),
        f"  data:       {cfg.data.name} {cfg.data.options or ''}".rstrip(),
        f"  model:      {cfg.model.name} (head {cfg.model.head})",
        f"  method:     {d.method}: {weights}",
    ]
    if d.teacher:
        lines.append(f"  teacher:    {d.teacher}")
    lines.append(
        f"  schedule:   {cfg.optim.final_epoch} epoch(s), {cfg.optim.name} lr {cfg.optim.lr:g}, "
        f"batch {cfg.data.batch_size}, seed {cfg.train.seed}"
    )
    return "\n".join(lines)


def _cmd_train(args) -> int:
    cfg = _run_config(args)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if args.dry_run:
        print(_plan_text(cfg, args.command, args.resume))
        return 0
    from mlkd.engine.trainer import fit

    if args.command == "distill" and cfg.distill.method == "vanilla":
        log.warning("distill with method=vanilla trains the student on labels only (the Student row)")
    record = fit(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(json.dumps({"run_dir": cfg.run_dir, "epoch": record.get("epoch"), "eval": _headline(record)}))
    return 0


def _headline(record: dict) -> dict:
    from mlkd.metrics import HEADLINE_METRICS

    out = {}
    for protocol, metrics in record.get("eval", {}).items():
        if isinstance(metrics, dict) and "mAP" in metrics:
            out[protocol] = {key: round(metrics[key], 6) for key in HEADLINE_METRICS}
    return out


def _cmd_eval(args) -> int:
    from mlkd.config import load_config
    from mlkd.engine.evaluation import evaluate_checkpoint

    # overrides change the --config given, else the checkpoint's own config
    data_cfg = load_config(args.config, args.overrides).data if args.config else None
    result = evaluate_checkpoint(
        args.checkpoint, args.protocol or None, data_cfg, args.device, overrides=None if args.config else args.overrides
    )
    from mlkd.engine.logs import json_safe

    text = json.dumps(json_safe(result), indent=None if args.compact else 2, allow_nan=False, default=float)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


def _cmd_demo(args) -> int:
    from mlkd.demo import run_demo

    report = run_demo(
        out=args.out,
        data=args.data,
        source=args.source,
        methods=args.methods,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
    )
    print(report)
    return 0


def _cmd_sweep(args) -> int:
    from mlkd.reproduce.grid import load_grid
    from mlkd.reproduce.report import table_text
    from mlkd.reproduce.sweep import format_plan, run_sweep

    grid = load_grid(args.grid, args.overrides, args.out)
    if args.dry_run:
        print(format_plan(grid))
        return 0
    report = run_sweep(grid, keep_going=args.keep_going, max_runs=args.max_runs)
    print(report.summary())
    print(table_text([args.grid], args.protocol, "md", grid.paper, args.overrides, args.out))
    return 1 if report.count("failed") or report.count("blocked") else 0


def _cmd_table(args) -> int:
    from mlkd.reproduce.report import table_text

    if args.out and Path(args.out).is_dir():
        raise ConfigError(
            f"mlkd table: --out {args.out} is a folder; --out names the file the table is "
            "written to (the runs folder of grid files is --runs)"
        )
    text = table_text(
        args.paths, args.protocol, args.format, args.paper, args.set or (), args.runs, args.title, args.paired
    )
    if args.diagnostics:
        from mlkd.analysis.diagnostics import diagnostics_table
        from mlkd.reproduce.grid import load_grid
        from mlkd.reproduce.report import is_grid_file

        grids = [load_grid(p, list(args.set or ()), args.runs) for p in args.paths if is_grid_file(p)]
        if not grids:
            raise ConfigError("mlkd table --diagnostics: give grid files (configs/...yaml)")
        text += "".join("\n" + diagnostics_table(grid) for grid in grids)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    print(text, end="")
    return 0


def _add_reproduce_parsers(sub) -> None:
    sweep = sub.add_parser("sweep", help="train a grid of (dataset, pair, method, seed) experiments, resumably")
    sweep.add_argument("grid", help="grid YAML (configs/coco_table1.yaml, configs/demo_table1.yaml, ...)")
    sweep.add_argument(
        "overrides",
        nargs="*",
        help="key.sub=value for config sections (data.options.root=/data/coco) "
        "or grid keys (seeds=[0,1,2], models.resnet34.pretrained=/w/r34.safetensors)",
    )
    sweep.add_argument("--out", "-o", metavar="DIR", help="runs folder (default: the grid's 'out')")
    sweep.add_argument("--dry-run", "-n", action="store_true", help="list the experiments and runs, train nothing")
    sweep.add_argument("--keep-going", action="store_true", help="go on after a failed run (its students are skipped)")
    sweep.add_argument("--max-runs", type=int, help="train at most N runs now (a rerun continues)")
    sweep.add_argument("--protocol", "-p", default="thr@0.5", help="protocol of the final table (default thr@0.5)")
    sweep.set_defaults(func=_cmd_sweep)

    table = sub.add_parser("table", help="paper-style table (mean ± std over seeds) from runs, sweeps or grids")
    table.add_argument("paths", nargs="*", help="run folders, sweep folders or grid YAML files")
    table.add_argument(
        "--protocol",
        "-p",
        default=None,
        help="thr@0.5 (default; with --paper: the published F1's protocol, oracle-k-strict), "
        "oracle-k, oracle-k-strict, thr@T, topk@K (one the runs logged: train.protocols)",
    )
    table.add_argument("--format", "-f", default="md", choices=["md", "csv", "latex"])
    table.add_argument("--paper", help="also show the published table1 ... table8 (SPEC numbering)")
    table.add_argument(
        "--runs",
        metavar="DIR",
        help="runs folder of the grid files given, as swept with mlkd sweep --out DIR (default: each grid's 'out')",
    )
    table.add_argument("--set", action="append", metavar="KEY=VALUE", help="override for the grid files (repeatable)")
    table.add_argument("--title", help="table title")
    table.add_argument("--paired", metavar="ROW", help="also show each row minus ROW seed by seed (e.g. Student)")
    table.add_argument(
        "--diagnostics",
        action="store_true",
        help="also show the grid's term diagnostics (gradient ratios to BCE, embedding geometry)",
    )
    table.add_argument(
        "--out",
        "-o",
        "--output",
        dest="out",
        metavar="FILE",
        help="also write the table to this file (--output: the same)",
    )
    table.set_defaults(func=_cmd_table)


def _cmd_models(args) -> int:
    from mlkd.models import format_catalog, model_catalog

    print(format_catalog(model_catalog(img_size=args.img_size, num_classes=args.num_classes)))
    return 0


def _cmd_data(args) -> int:
    from mlkd.config import load_config
    from mlkd.data.summary import format_summary, summarize_config

    cfg = load_config(args.config, args.overrides)
    print(format_summary(summarize_config(cfg, args.labels_only, args.batch_size)))
    return 0


def _cmd_bench(args) -> int:
    from mlkd.bench.__main__ import main as bench_main

    return bench_main([args.suite, *args.rest])


def _cmd_analyze(args) -> int:
    from mlkd.analysis.analyze import analyze
    from mlkd.analysis.common import parse_int_list

    options = {
        "retrieval": {"ks": args.k or (5, 10), "queries": parse_int_list(args.queries, "--queries")},
        "attention": {
            "images": parse_int_list(args.images, "--images"),
            "score_images": args.score_images,
            "classes": args.classes.split(",") if args.classes else None,
            "method": args.cam,
            "layer": args.layer,
        },
    }
    result = analyze(
        [args.analysis],
        args.checkpoints,
        args.out,
        config=args.config,
        device=args.device,
        limit=args.limit,
        teacher=args.teacher,
        baseline=args.baseline,
        batch_size=args.batch_size,
        options=options,
    )
    from mlkd.engine.logs import json_safe

    print(json.dumps(json_safe(result), indent=2, allow_nan=False, default=float))
    return 0


def _cmd_analyze_combine(args) -> int:
    from mlkd.analysis.combine import combine, to_markdown

    combined = combine(args.folders)
    table = to_markdown(combined)
    print(f"mean ± sample std over {len(args.folders)} analysis folder(s)\n\n{table}", end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "combined.md").write_text(table)
        (out / "combined.json").write_text(json.dumps(combined, indent=1))
    return 0


def _add_analyze_parser(sub) -> None:
    analyze = sub.add_parser("analyze", help="per-class AP, correlation, retrieval, attention maps from checkpoints")
    kinds = analyze.add_subparsers(dest="analysis", required=True)
    combine = kinds.add_parser("combine", help="mean ± std of several analysis folders (one per seed)")
    combine.add_argument("folders", nargs="+", help="folders written by mlkd analyze --out (same model names)")
    combine.add_argument("--out", "-o", metavar="DIR", help="also write combined.md and combined.json here")
    combine.set_defaults(func=_cmd_analyze_combine)
    helps = {
        "per-class": "per-class AP table (Table 3) and the per-label KD gain chart",
        "correlation": "student minus teacher correlation of predicted probabilities (heat-maps, MAD)",
        "retrieval": "k-NN retrieval on the test split: mAP@k / P@k, top-5 grids",
        "attention": "LayerCAM / Grad-CAM and head cross-attention per class, models side by side",
        "all": "every analysis above",
    }
    for name, text in helps.items():
        p = kinds.add_parser(name, help=text)
        p.add_argument("checkpoints", nargs="+", help="[NAME=]PATH: checkpoint files or run folders (teacher first)")
        p.add_argument(
            "--out", "-o", metavar="DIR", default="runs/analysis", help="output folder (default runs/analysis)"
        )
        p.add_argument("--teacher", help="name of the teacher (default: the one the others name, else the first)")
        p.add_argument("--baseline", help="name of the vanilla student (default: the first other vanilla run)")
        p.add_argument("--config", "-c", help="use this config's data section instead of the first checkpoint's")
        p.add_argument("--limit", type=int, help="only the first N test images")
        p.add_argument("--batch-size", type=int, help="evaluation batch size (default: the data config's)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
        if name in ("retrieval", "all"):
            p.add_argument(
                "--k", type=int, action="append", help="cut-off for mAP@k / P@k (repeatable; default 5 and 10)"
            )
            p.add_argument("--queries", help="test-image positions shown in the top-5 grid, e.g. 0,7")
        if name in ("attention", "all"):
            p.add_argument("--images", help="test-image positions shown, e.g. 0,3 (default: the first two)")
            p.add_argument(
                "--classes", help="class names to query, e.g. dog,cat (default: each image's labels, up to 2)"
            )
            p.add_argument("--score-images", type=int, default=64, help="images the attention numbers average over")
            p.add_argument("--cam", default="layercam", choices=["layercam", "gradcam"])
            p.add_argument("--layer", help="module for the CAM (default: the penultimate backbone stage)")
        p.set_defaults(
            func=_cmd_analyze,
            k=None,
            queries=None,
            images=None,
            classes=None,
            score_images=64,
            cam="layercam",
            layer=None,
        )


def _cmd_export(args) -> int:
    from mlkd.export.api import export

    report = export(args.model, args.format, args.output, args.tolerance, args.check_map, args.map_limit)
    print(json.dumps(report, indent=2))
    return 0


def _cmd_calibrate(args) -> int:
    from mlkd.engine.calibrate import calibrate_run

    result = calibrate_run(args.run, args.holdout, args.min_positives, args.device)
    summary = {key: result[key] for key in ("path", "validation", "evaluated_split")}
    summary["labels_by_f1"] = result["rules"].count("f1")
    summary["calibrated"] = {key: result["eval"]["calibrated"][key] for key in ("mAP", "OF1", "CF1")}
    summary["thresholds"] = dict(zip(result["classes"], (round(t, 4) for t in result["thresholds"])))
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_predict(args) -> int:
    from mlkd.export.predict import format_rows, load_predictor, predict_files, read_list

    files = list(args.images) + (read_list(args.list) if args.list else [])
    if not files:
        raise ConfigError("mlkd predict: give image files or --list FILE")
    print(format_rows(predict_files(load_predictor(args.model), files, args.batch_size), args.format), end="")
    return 0


def _add_export_parsers(sub) -> None:
    export = sub.add_parser("export", help="export a run's model to ONNX or safetensors (parity checked)")
    export.add_argument("model", help="a run folder or checkpoint file")
    export.add_argument("--format", "-f", default="onnx", choices=["onnx", "safetensors"])
    export.add_argument(
        "--out", "-o", "--output", dest="output", help="file (.onnx) or folder (safetensors); default RUN/export/"
    )
    export.add_argument("--tolerance", type=float, help="largest max |logit diff| accepted (onnx 1e-3)")
    export.add_argument("--check-map", action="store_true", help="also compare mAP on the run's test split")
    export.add_argument("--map-limit", type=int, help="with --check-map: only the first N test images")
    export.set_defaults(func=_cmd_export)
    calibrate = sub.add_parser("calibrate", help="per-label F1 thresholds on a validation split (data.holdout)")
    calibrate.add_argument("run", help="a run folder or checkpoint file")
    calibrate.add_argument(
        "--holdout", type=float, help="validation fraction of the training images (default: the run's data.holdout)"
    )
    calibrate.add_argument("--min-positives", type=int, default=5, help="fewer positives: keep 0.5 (default 5)")
    calibrate.add_argument("--device", default="auto")
    calibrate.set_defaults(func=_cmd_calibrate)
    predict = sub.add_parser("predict", help="labels above their thresholds, with scores, per image")
    predict.add_argument("model", help="an .onnx export, a safetensors export folder, a run folder or checkpoint")
    predict.add_argument("images", nargs="*", help="image files")
    predict.add_argument("--list", help="a file of image paths, one a line")
    predict.add_argument("--format", default="jsonl", choices=["jsonl", "table"])
    predict.add_argument("--batch-size", type=int, default=16)
    predict.set_defaults(func=_cmd_predict)


class _MethodNames:
    """The registered methods in table order, read when a help text is printed (``%(methods)s``
    in the ``--method`` help): listing them imports torch, so ``mlkd --help`` stays fast."""

    def __str__(self) -> str:
        from mlkd.losses.methods import method_names

        return ", ".join(method_names())


METHOD_HELP = "objective name: %(methods)s (default from the config: vanilla)"


def _add_plugin_arg(parser: argparse.ArgumentParser, default=None) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[] if default is None else default,
        metavar="MODULE",
        help="import this module first: its loss terms, methods, heads or datasets "
        "register themselves (repeatable; see docs/extending.md)",
    )


def _global_args(parser: argparse.ArgumentParser, default=None) -> None:
    """--debug, --quiet, --plugin: on the main parser (defaults) and on every subcommand (given
    after it; ``default=SUPPRESS`` there, so they do not reset what was given before it)."""
    flag = {} if default is None else {"default": default}
    parser.add_argument("--debug", action="store_true", help="show full tracebacks", **flag)
    parser.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors", **flag)
    _add_plugin_arg(parser, default)


class _SubCommands(argparse._SubParsersAction):
    """Subcommands that also take the global flags (given after the subcommand name)."""

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        common = argparse.ArgumentParser(add_help=False)
        _global_args(common, argparse.SUPPRESS)
        parser = super().add_parser(name, parents=[common, *kwargs.pop("parents", [])], **kwargs)
        parser.register("action", "parsers", _SubCommands)  # nested subcommands too
        return parser


def build_parser() -> argparse.ArgumentParser:
    from mlkd import __version__

    parser = argparse.ArgumentParser(prog="mlkd", description="Multi-label knowledge distillation (L2D and baselines).")
    parser.add_argument("--version", action="version", version=f"mlkd {__version__}")
    _global_args(parser)
    parser.register("action", "parsers", _SubCommands)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a teacher or a vanilla model with BCE")
    _add_config_args(train)
    train.add_argument("--method", help=METHOD_HELP).methods = _MethodNames()
    train.set_defaults(func=_cmd_train)

    distill = sub.add_parser("distill", help="distil a student from a teacher checkpoint")
    _add_config_args(distill)
    distill.add_argument("--teacher", help="teacher checkpoint (sets distill.teacher)")
    distill.add_argument("--method", help=METHOD_HELP).methods = _MethodNames()
    distill.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint on its test split")
    evaluate.add_argument("checkpoint", help="a checkpoint file, or a run folder (its checkpoints/last.pt)")
    evaluate.add_argument(
        "--protocol",
        "-p",
        action="append",
        help="thr@0.5, thr@T, topk@K, oracle-k or calibrated (repeatable; default: the run's)",
    )
    evaluate.add_argument("--config", "-c", help="evaluate on this config's data instead of the checkpoint's")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    evaluate.add_argument(
        "--out",
        "-o",
        "--json",
        dest="out",
        metavar="FILE",
        help="also write the metrics to this JSON file (--json: the same)",
    )
    evaluate.add_argument("--compact", action="store_true", help="one-line JSON")
    evaluate.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    evaluate.set_defaults(func=_cmd_eval)

    demo = sub.add_parser(
        "demo",
        help="a teacher + students with a report: pretrained EfficientNet-Lite on "
        "COCO-shaped scenes (default) or from-scratch nets on mosaics",
    )
    demo.add_argument(
        "--out", "-o", metavar="DIR", default="runs/demo", help="output folder (a second run reuses its teacher)"
    )
    demo.add_argument(
        "--data",
        default="scenes",
        choices=["scenes", "mosaic"],
        help="scenes: Lite2 -> Lite0 on coco_scenes; mosaic: ResNet-18 -> MobileNetV2 on mosaics",
    )
    demo.add_argument(
        "--source",
        default="auto",
        choices=["auto", "fashion-mnist", "digits"],
        help="mosaic source (--data mosaic): auto = fashion-mnist when installed, else digits",
    )
    demo.add_argument(
        "--methods",
        default="core",
        help="core (scenes: vanilla, mld, l2d, l2d-bounded; mosaic: + l2d-validated), all (every baseline "
        "too) or a comma list",
    )
    demo.add_argument("--epochs", type=int, default=None, help="student/teacher epochs (default: the demo's)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.set_defaults(func=_cmd_demo)

    _add_reproduce_parsers(sub)

    models = sub.add_parser(
        "models",
        help="the paper's backbones and those with offline ImageNet weights: "
        "parameters, FLOPs, where the weights come from",
    )
    models.add_argument("--img-size", type=int, default=224)
    models.add_argument("--num-classes", type=int, default=80)
    models.set_defaults(func=_cmd_models)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    summary = data_sub.add_parser(
        "summary", help="images, labels per image, per-class counts, positives per batch, missing and skipped files"
    )
    summary.add_argument("config", help="experiment YAML whose data section is summarised")
    summary.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    summary.add_argument(
        "--labels-only",
        action="store_true",
        help="read the annotations only: no image file is looked for or decoded "
        "(inspect the labels before downloading the images)",
    )
    summary.add_argument(
        "--batch-size", type=int, metavar="B", help="the B of the per-batch statistics (default: data.batch_size)"
    )
    summary.set_defaults(func=_cmd_data)

    bench = sub.add_parser("bench", help="benchmarks (speed / memory ratios measured in one run)")
    bench.add_argument("suite", help="losses, data, ... (python -m mlkd.bench --help lists them)")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the suite")
    bench.set_defaults(func=_cmd_bench)

    _add_analyze_parser(sub)
    _add_export_parsers(sub)
    return parser


def _plugins_given(argv: Optional[list[str]]) -> list[str]:
    """Every ``--plugin MODULE`` of the command line, wherever it stands."""
    early = argparse.ArgumentParser(add_help=False)
    _add_plugin_arg(early)
    known, _ = early.parse_known_args(sys.argv[1:] if argv is None else argv)
    return known.plugin


def _import_plugins(argv: Optional[list[str]]) -> None:
    """Import the ``--plugin`` modules before the parser is built (its help lists their methods)."""
    from mlkd.plugins import load_plugins

    load_plugins(_plugins_given(argv), "command line", "--plugin")


def parse_command_line(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may come before or after the options."""
    _import_plugins(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.plugin = _plugins_given(argv)  # before and after the subcommand
    if isinstance(getattr(args, "overrides", None), list):
        args.overrides += [item for item in extra if "=" in item and not item.startswith("-")]
        extra = [item for item in extra if item not in args.overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = parse_command_line(argv)
    except MLKDError as err:  # a --plugin that cannot be imported
        print(f"mlkd: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C while a --plugin imports
        print(f"mlkd: {_interrupted(err)}", file=sys.stderr)
        return 130
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except Preempted as err:  # a checkpoint of this point was saved: the job may be requeued
        print(f"mlkd: {_one_line(str(err))}", file=sys.stderr)
        return EXIT_PREEMPTED
    except MLKDError as err:
        if args.debug:
            raise
        print(f"mlkd: error: {_one_line(str(err))}", file=sys.stderr)  # may quote a multi-line cause
        return 2
    except KeyboardInterrupt as err:  # (PluginInterrupted: while a config's plugin imports)
        print(f"mlkd: {_interrupted(err)}", file=sys.stderr)
        return 130
    except Exception as err:  # an unexpected failure: one line, the traceback with --debug
        if args.debug:
            raise
        first = str(err).strip()[:MESSAGE_LIMIT].splitlines()[0] if str(err).strip() else ""
        print(
            f"mlkd: error: {type(err).__name__}: {_one_line(first)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _interrupted(err: KeyboardInterrupt) -> str:
    """ "interrupted", or the message of a PluginInterrupted (which names the module)."""
    return _one_line(str(err)) if str(err) else "interrupted"


def _one_line(text: str) -> str:
    """The message on one line, bounded (a message quotes causes and values)."""
    return shorten(text, MESSAGE_LIMIT)


if __name__ == "__main__":
    sys.exit(main())
