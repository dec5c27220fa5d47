"""The commands that measure: ``eval`` (the accuracy tables) and ``eval-reference`` (a trained
reference edge-CNN run on the keypoint dataset)."""
from __future__ import annotations

from meshpose.eval.benchmarks import cmd_eval
from meshpose.meshkp.seed_task import HEADER, score_row


def cmd_eval_reference(args) -> int:
    if not args.no_header:
        print(HEADER)
    print(score_row(args.run_dir, args.dataset, args.split, args.weights))
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser("eval", help="accuracy tables: 2D keypoints -> body (held-out motion, "
                                              "Human3.6M S1) and mesh -> keypoints (held-out meshes)")
    parser.add_argument("--tasks", nargs="+", choices=("predict", "mesh-keypoints"), default=["predict"],
                        help="which tables (default: predict)")
    parser.add_argument("--model", nargs="+", default=["default"],
                        help="models of the predict table: shipped names (default, research, pose2mesh) or files")
    parser.add_argument("--h36m", default=None, help="folder with the Human3.6M S1 files")
    parser.add_argument("--bank", action="append", metavar="NAME=PATH",
                        help="another held-out pose bank, e.g. hdm05_test=bank_hdm05_test.npz")
    parser.add_argument("--samples", type=int, default=1024, help="per held-out motion protocol")
    parser.add_argument("--stride", type=int, default=5, help="Human3.6M: every n-th frame")
    parser.add_argument("--keypoint-dataset", default=None,
                        help="mesh-keypoints: folder from meshpose data build-keypoints (human_seg)")
    parser.add_argument("--reference-model", default=None,
                        help="mesh-keypoints: also evaluate this trained reference edge-CNN run folder")
    parser.set_defaults(run=cmd_eval)

    reference = commands.add_parser(
        "eval-reference", help="scores of a trained reference edge-CNN run on the keypoint dataset",
        description="PCK@0.1, PCK@0.05, PCM(0.9) and the mean matched distance of a meshkp_seed run "
                    "on one split of a folder from meshpose data build-keypoints, as a Markdown row.")
    reference.add_argument("run_dir", metavar="RUN_DIR", help="meshkp_seed run folder")
    reference.add_argument("dataset", metavar="DATASET", help="folder from meshpose data build-keypoints")
    reference.add_argument("--split", default="test", choices=("train", "val", "test"))
    reference.add_argument("--weights", default="best", choices=("best", "final"),
                           help="best checkpoint or final weights (default best)")
    reference.add_argument("--no-header", action="store_true", help="the row only")
    reference.set_defaults(run=cmd_eval_reference)
