"""``edgesr`` command line: one sub-command per DVC stage plus the measuring tools.

Errors a user can cause (:class:`edgesr.errors.UserError`: a bad ``params.yaml``, a missing folder, a
wrong model name, a stage not run yet) print one ``error: ...`` line that says what to fix and exit
with status 2; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from edgesr.compose.settings import ROUTERS
from edgesr.deploy.settings import PRECISIONS, RUNTIMES
from edgesr.errors import UsageError, UserError
from edgesr.kernels import use_portable_kernels

if TYPE_CHECKING:
    from edgesr.deploy.runtimes import Runner

__all__ = ["main"]

COMPOSED = "composed"
"""`edgesr upscale --model composed`: compose.branches behind compose.router (stage `compose`)."""


def _add_params_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    parser.add_argument("--profile", help="profile merged over the params file: smoke, paper, or a .yaml path")


def _load(args: argparse.Namespace):
    from edgesr.config import load_params

    return load_params(args.params, args.profile)


def _cmd_config(args: argparse.Namespace) -> None:
    from edgesr.config import write_params

    params = _load(args)
    if args.model:
        if args.model not in params.models:
            raise UsageError(f"no model '{args.model}' in `models`; known: {', '.join(params.models)}")
        effective = {"arch": params.models[args.model].arch, "train": params.train_config(args.model)}
        print(yaml.safe_dump({k: v.model_dump(mode="json") for k, v in effective.items()}, sort_keys=False), end="")
    elif args.write:
        write_params(params, args.write)
        print(f"wrote {args.write}")
    else:
        print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from edgesr.stages import prepare

    manifest = prepare.run(_load(args))
    print(json.dumps(manifest["counts"], indent=2))


def _cmd_train(args: argparse.Namespace) -> None:
    use_portable_kernels()  # before torch: a training run reproduces on another x86-64 machine
    from edgesr.stages import train

    result = train.run(_load(args), args.model)
    print(f"{args.model}: best validation PSNR-Y {result.best_psnr:.3f} dB at iteration {result.best_iteration}")


def _cmd_search(args: argparse.Namespace) -> None:
    use_portable_kernels()  # before torch: a training run reproduces on another x86-64 machine
    from edgesr.stages import search

    found = search.run(_load(args), args.size)
    band = "within" if found.within_budget else "OUTSIDE"
    measured = "" if found.measured_ms is None else f", measured {found.measured_ms:.1f} ms"
    print(
        f"search@{args.size}: {found.mult_adds / 1e9:.3f} G Mult-Adds at 720p, cost {found.cost:.4g}{measured} "
        f"({band} the budget), supernet validation PSNR-Y {found.val_psnr:.3f} dB"
    )


def _cmd_retrain(args: argparse.Namespace) -> None:
    use_portable_kernels()  # before torch: a training run reproduces on another x86-64 machine
    from edgesr.artifacts import subnet_name
    from edgesr.stages import retrain

    result = retrain.run(_load(args), args.size, args.scale)
    name = subnet_name(args.size, args.scale)
    print(f"{name}: best validation PSNR-Y {result.best_psnr:.3f} dB at iteration {result.best_iteration}")


def _cmd_reporting_stage(args: argparse.Namespace, stage: str) -> None:
    """Run a stage that writes ``metrics/<stage>.md`` (evaluate, quantize) and print that table."""
    module = importlib.import_module(f"edgesr.stages.{stage}")
    params = _load(args)
    module.run(params)
    print((Path(params.paths.metrics) / f"{stage}.md").read_text(), end="")


def _cmd_sources(args: argparse.Namespace) -> None:
    from edgesr.stages import sources

    for path in sources.run(_load(args)):
        print(path)


def _cmd_figures(args: argparse.Namespace) -> None:
    from edgesr.stages import figures

    for path in figures.run(_load(args)):
        print(path)


def _cmd_export(args: argparse.Namespace) -> None:
    from edgesr.stages import export

    for name, parity in export.run(_load(args)).items():
        diffs = ", ".join(f"{key.removesuffix('_max_abs')} {value:.1e}" for key, value in parity.items())
        print(f"{name}: max |PyTorch - runtime| {diffs}")


def _cmd_register(args: argparse.Namespace) -> None:
    from edgesr.stages import register

    for name, entry in register.run(_load(args)).items():
        print(f"{name}: version {entry['version']}" + (" registered as candidate" if entry["new"] else " (unchanged)"))


def _registry(args: argparse.Namespace):
    from edgesr.registry.store import Registry
    from edgesr.tracking import tracking_uri

    return Registry(args.registry or tracking_uri())


def _cmd_promote(args: argparse.Namespace) -> None:
    from edgesr.registry.promote import promote

    decision = promote(_load(args), args.model, _registry(args), dry_run=args.dry_run)
    print(decision.describe())
    if not decision.passed and not args.dry_run:
        raise UserError(f"{args.model} version {decision.candidate} was not promoted: a gate failed (listed above)")


def _cmd_keys_init(args: argparse.Namespace) -> None:
    from edgesr.registry.signing import init_keys, key_id, load_public_key

    folder = args.dir or Path(_load(args).registry.keys_dir)
    private, public = init_keys(folder, force=args.force)
    print(f"key {key_id(load_public_key(public))}: private {private} (mode 600, keep it secret), public {public}")


def _cmd_device_pull(args: argparse.Namespace) -> None:
    from edgesr.config import load_params
    from edgesr.registry.device import pull
    from edgesr.registry.signing import PUBLIC_KEY, load_public_key

    params = load_params(args.params)
    if args.profile not in params.registry.profiles:
        raise UsageError(
            f"no device profile '{args.profile}'; registry.profiles: {', '.join(params.registry.profiles)}"
        )
    public = load_public_key(args.public_key or Path(params.registry.keys_dir) / PUBLIC_KEY)
    model = args.model or params.registered_names()[0]
    state = pull(
        args.home, args.profile, model, _registry(args), public, params.registry.smoke_tolerance_db, args.device_id
    )
    print(f"{args.home}: {state['last_pull']['result']}, running {model} version {state.get('version', '-')}")


def _cmd_device_status(args: argparse.Namespace) -> None:
    from edgesr.registry.device import status

    print(json.dumps(status(args.home), indent=2))


def _cmd_upscale(args: argparse.Namespace) -> None:
    from edgesr.deploy.runners import deployed_runner
    from edgesr.deploy.upscale import plan, upscale_all

    params = _load(args)
    cfg = params.deploy
    name, runtime, precision = args.model or cfg.default_model, args.runtime or cfg.runtime, args.precision
    precision = precision or ("fp32" if runtime == "torch" else cfg.precision)
    if name not in (*cfg.models, COMPOSED):
        raise UsageError(
            f"'{name}' is not deployed; deployed models (deploy.models): {', '.join(cfg.models)}, or {COMPOSED}"
        )
    tile, overlap = args.tile or cfg.tile, cfg.overlap if args.overlap is None else args.overlap
    jobs = plan(args.input, args.output, params.scale)
    if name == COMPOSED:
        from edgesr.compose.deployed import composed_model

        runner: Runner = composed_model(params, runtime, precision, args.router)
    else:
        runner = deployed_runner(params, name, runtime, precision)
    done = upscale_all(jobs, runner, params.scale, tile, overlap, cfg.border)
    skipped = len(jobs) - len(done)
    print(
        f"{name} x{params.scale} ({runtime} {precision}): wrote {len(done)} image(s)"
        + (f", skipped {skipped} unreadable" if skipped else "")
        + (f" to {done[0].target.parent}" if len(done) > 1 else f" to {done[0].target}" if done else "")
    )


def _cmd_bicubic(args: argparse.Namespace) -> None:
    from edgesr.data.bicubic_baseline import bicubic_scores

    scores = bicubic_scores(args.hr, args.scale)
    if args.json:
        print(json.dumps(scores))
    else:
        print(
            f"bicubic x{args.scale} on {scores['images']} images: "
            f"PSNR-Y {scores['psnr']:.2f} dB, SSIM-Y {scores['ssim']:.4f}"
        )


def _cmd_complexity(args: argparse.Namespace) -> None:
    from edgesr.complexity import count_complexity
    from edgesr.models import MODEL_NAMES, build_model, default_model_config

    # the project's own configuration of a model comes first: `plain_resnet` of a cpu-long project is its 8 x 36
    models = _load(args).models if Path(args.params).exists() else {}
    if args.model in models:
        cfg, source = models[args.model].arch, f"`models.{args.model}` of {args.params}"
    elif args.model in MODEL_NAMES:
        cfg, source = default_model_config(args.model), "zoo default"
    else:
        raise UsageError(
            f"unknown model '{args.model}': use a zoo name ({', '.join(MODEL_NAMES)}) "
            f"or a key of `models` in {args.params} ({', '.join(models) or 'none there'})"
        )
    height, width = args.output
    result = count_complexity(build_model(cfg, args.scale), args.scale, (height, width))
    if args.json:
        print(json.dumps({"params": result.params, "mult_adds": result.mult_adds, "other_ops": result.other_ops}))
    else:
        print(
            f"{args.model} x{args.scale} ({source}): {result.params:,} params, {result.mult_adds / 1e9:.3f} G "
            f"Mult-Adds and {result.other_ops / 1e9:.3f} G other ops for a {width}x{height} output"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgesr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the effective configuration (params.yaml + profile)")
    _add_params_args(p)
    p.add_argument("--write", type=Path, help="write the merged, complete configuration to this file instead")
    p.add_argument("--model", help="print this model's architecture and effective (merged) training settings")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("prepare", help="DVC stage: LR/HR pairs, split and benchmark sets")
    _add_params_args(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="DVC stage: train one model of params.yaml `models` (resumes if interrupted)")
    _add_params_args(p)
    p.add_argument("--model", required=True, help="a key of `models` in params.yaml")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("search", help="DVC stage: FGNAS supernet search for one size of `search.sizes`")
    _add_params_args(p)
    p.add_argument("--size", required=True, help="a key of `search.sizes` in params.yaml (e.g. S, M, L)")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("retrain", help="DVC stage: train a searched subnet from scratch at one scale")
    _add_params_args(p)
    p.add_argument("--size", required=True, help="a key of `search.sizes` whose search has run")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), required=True)
    p.set_defaults(func=_cmd_retrain)

    stages = {
        "sources": ("fingerprints of the configured image folders (reruns prepare when they change)", _cmd_sources),
        "evaluate": ("the table of every trained model and bicubic", partial(_cmd_reporting_stage, stage="evaluate")),
        "figures": ("training curves, sample crops and searched architectures as PNG", _cmd_figures),
        "export": ("ONNX and OpenVINO IR of deploy.models, with a parity check", _cmd_export),
        "quantize": (
            "int8 PTQ with NNCF and ONNX Runtime, fp32 vs int8 report",
            partial(_cmd_reporting_stage, stage="quantize"),
        ),
        "compose": (
            "ClassSR-style composition of compose.branches: classifier and edge routers, evaluated",
            partial(_cmd_reporting_stage, stage="compose"),
        ),
    }
    stages["register"] = ("registry.models as new candidate versions in the MLflow registry", _cmd_register)
    for name, (text, func) in stages.items():
        p = sub.add_parser(name, help=f"DVC stage: {text}")
        _add_params_args(p)
        p.set_defaults(func=func)

    p = sub.add_parser("upscale", help="upscale an image file or a folder with a deployed model, tile by tile")
    _add_params_args(p)
    p.add_argument("input", type=Path, help="an image file or a folder of images")
    p.add_argument("-o", "--output", type=Path, help="PNG file or folder (default: <name>_x<scale> beside the input)")
    p.add_argument("--model", help=f"a deploy.models name or {COMPOSED} (default: deploy.default_model)")
    p.add_argument("--router", choices=ROUTERS, help=f"with --model {COMPOSED} (default: compose.router)")
    p.add_argument("--runtime", choices=RUNTIMES, help="default: deploy.runtime")
    p.add_argument("--precision", choices=PRECISIONS, help="default: deploy.precision (fp32 for torch)")
    p.add_argument("--tile", type=int, help="LR tile side (default: deploy.tile)")
    p.add_argument("--overlap", type=int, help="LR context pixels around each tile (default: deploy.overlap)")
    p.set_defaults(func=_cmd_upscale)

    registry_help = "MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
    p = sub.add_parser("promote", help="move `champion` to the candidate when every quality gate passes")
    _add_params_args(p)
    p.add_argument("model", help="a registered model (registry.models)")
    p.add_argument("--dry-run", action="store_true", help="measure and show the decision; write nothing")
    p.add_argument("--registry", help=registry_help)
    p.set_defaults(func=_cmd_promote)

    keys = sub.add_parser("keys", help="the Ed25519 key pair that signs edge bundles").add_subparsers(
        dest="keys_command", required=True
    )
    p = keys.add_parser("init", help="make the signing key pair (private key file mode 600)")
    _add_params_args(p)
    p.add_argument("--dir", type=Path, help="key folder (default: registry.keys_dir)")
    p.add_argument("--force", action="store_true", help="replace an existing pair (devices must get the new key)")
    p.set_defaults(func=_cmd_keys_init)

    device = sub.add_parser("device", help="play an edge device: pull the champion's bundle, show its state")
    device_commands = device.add_subparsers(dest="device_command", required=True)
    p = device_commands.add_parser("pull", help="download, verify, swap in and check the champion's bundle")
    # --profile names the device profile here; a params profile can be merged with `edgesr config --write`
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    p.add_argument("--profile", required=True, help="a device profile of registry.profiles")
    p.add_argument("--home", type=Path, required=True, help="the device's folder")
    p.add_argument("--model", help="registered model (default: the first of registry.models)")
    p.add_argument("--public-key", type=Path, help="trusted public key (default: <registry.keys_dir>/signing.pub)")
    p.add_argument("--device-id", help="name in the registry's device tags (default: <host>-<home folder>)")
    p.add_argument("--registry", help=registry_help)
    p.set_defaults(func=_cmd_device_pull)
    p = device_commands.add_parser("status", help="what the device runs, its check and its last pull")
    p.add_argument("--home", type=Path, required=True, help="the device's folder")
    p.set_defaults(func=_cmd_device_status)

    p = sub.add_parser("bicubic", help="PSNR-Y / SSIM-Y of MATLAB bicubic upscaling on a folder of HR images")
    p.add_argument("--hr", type=Path, required=True, help="folder of HR images")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), required=True)
    p.add_argument("--json", action="store_true", help='print {"psnr": .., "ssim": .., "images": N}')
    p.set_defaults(func=_cmd_bicubic)

    p = sub.add_parser("complexity", help="parameters and Mult-Adds of a model for a 1280x720 output")
    _add_params_args(p)
    p.add_argument(
        "model", help="a key of `models` in params.yaml (as configured there) or a zoo name (its default configuration)"
    )
    p.add_argument("--scale", type=int, choices=(2, 3, 4), required=True)
    p.add_argument("--output", type=int, nargs=2, default=(720, 1280), metavar=("H", "W"), help="output size")
    p.add_argument("--json", action="store_true", help='print {"params": .., "mult_adds": ..}')
    p.set_defaults(func=_cmd_complexity)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 2 (with one ``error:`` line on stderr) for a :class:`UserError`."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
