"""``hybridrec train``: fit the hybrid model on a dataset and write a model directory.

``torchrun --nproc-per-node N -m hybridrec.cli train ...`` trains the GNN with DDP on ``N``
processes (see :mod:`training.distributed`); rank 0 fits the CF head and writes ``--out``,
``--json`` and the checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from hybridrec.atomic import check_writable
from hybridrec.cli.common_flags import (add_device_argument, add_json_argument, check_json_target, emit_json,
                                        json_text, text_stream)
from hybridrec.cli.dataset_args import add_dataset_arguments, load_dataset_from_args
from hybridrec.tables import RecDataset
from training.distributed import is_main_process, shutdown


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the hybrid model's content and configuration (shared with ``evaluate``)."""
    group = parser.add_argument_group("hybrid model")
    group.add_argument("--config", help="TOML file with [train] (TrainConfig) and [model] (HybridRecommender) tables")
    group.add_argument("--text-cols", type=lambda s: [c for c in s.split(",") if c], default=None,
                       help="item text columns to encode, comma-separated (default: the dataset's text columns)")
    group.add_argument("--images", action=argparse.BooleanOptionalAction, default=True,
                       help="encode item images when the dataset has them (default: yes; the poster is aligned "
                            "with a text column, see HybridRecommender(image_alignment=...))")
    group.add_argument("--gnn-epochs", type=int, default=None, help="override the GNN training epochs")
    group.add_argument("--model-seed", type=int, default=None, help="seed of the model (default 0)")
    group.add_argument("--validation-order", choices=("random", "latest"), default=None,
                       help="how the fit's validation hold-out is drawn: each interaction at random (the default), "
                            "or each user's latest ones by timestamp (meant for a split by time; what it measured "
                            "is in benchmarks/README.md)")
    add_device_argument(group, what=" for the encoders, the dense CF head and the GNN")


def build_model(args: argparse.Namespace):
    from hybridrec.recommender_config import hybrid_from_config

    overrides = {}
    if args.gnn_epochs is not None:
        overrides["epochs"] = args.gnn_epochs
    if args.model_seed is not None:
        overrides["seed"] = args.model_seed
    if args.validation_order is not None:
        overrides["validation_order"] = args.validation_order
    if args.device != "auto":
        overrides["device"] = args.device
    return hybrid_from_config(args.config, **overrides)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train the hybrid model and save it",
                                   description="Fit HybridRecommender on a dataset and write a model directory.")
    add_dataset_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--min-rating", type=float, default=None, help="train on interactions rated at least this")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model already saved at --out (any other folder is never replaced)")
    add_json_argument(parser, what="the training summary (CF head, GNN training mode, timings, peak memory)")
    parser.add_argument("--checkpoint-dir", help="GNN checkpoints; an interrupted run resumes from here (a checkpoint "
                                                 "of another config or other data is refused)")
    parser.add_argument("--fresh-checkpoint", action="store_true",
                        help="ignore a checkpoint in --checkpoint-dir: train from the start and replace it")
    parser.set_defaults(handler=run)


def model_dataset(dataset: RecDataset, args: argparse.Namespace, **tables) -> RecDataset:
    """``dataset`` with the content the flags choose (``--text-cols``, ``--no-images``) and any of
    its tables replaced by ``tables`` (e.g. ``interactions=`` a training split)."""
    roles = dataset.item_roles
    item_roles = dataclasses.replace(roles, text=list(roles.text if args.text_cols is None else args.text_cols),
                                     image=roles.image if args.images else None)
    return dataclasses.replace(dataset, item_roles=item_roles, **tables)


def run(args: argparse.Namespace) -> int:
    from hybridrec.recommender_base import MODEL_FOLDER

    check_writable(args.out, arg="--out", kind=MODEL_FOLDER, overwrite=args.overwrite)
    check_json_target(args)
    if args.checkpoint_dir:
        from training.trainer import LAST_CHECKPOINT

        check_writable(Path(args.checkpoint_dir) / LAST_CHECKPOINT, arg="--checkpoint-dir", overwrite=True)
    dataset = load_dataset_from_args(args)
    interactions = dataset.interactions
    if args.min_rating is not None:
        from data_builders.filters import implicit_positives

        interactions, _ = implicit_positives(interactions, min_rating=args.min_rating)
    model = build_model(args)
    fit_on = model_dataset(dataset, args, interactions=interactions)
    started = time.perf_counter()
    try:
        model.fit(fit_on, checkpoint_dir=args.checkpoint_dir, fresh_checkpoint=args.fresh_checkpoint)
    finally:
        shutdown()                      # torchrun: leave the process group (nothing in a single process)
    seconds = time.perf_counter() - started
    if not is_main_process():           # torchrun: rank 0 alone writes the model and the summary
        return 0
    summary = {"dataset": dataset.name, "interactions": len(interactions), "fit_seconds": round(seconds, 2),
               "item_roles": fit_on.item_roles.to_dict(), "user_roles": fit_on.user_roles.to_dict(),
               "timings": {k: round(v, 2) for k, v in model.fit_timings_.items()},
               "fit_summary": getattr(model, "fit_summary_", None),
               "best_epoch": getattr(getattr(model, "train_result_", None), "best_epoch", None),
               "modality_gates": getattr(model, "modality_gates_", {})}
    text = json_text(summary)
    model.save(args.out, overwrite=args.overwrite, extra_files={"train_summary.json": text})
    emit_json(args, text)
    fit_summary = getattr(model, "fit_summary_", {})
    print(f"trained on {len(interactions):,} interactions in {seconds:.1f} s "
          f"(CF head {fit_summary.get('cf_head')}, GNN {fit_summary.get('gnn_negatives')} negatives / "
          f"{fit_summary.get('gnn_training_mode')}, peak RSS {fit_summary.get('peak_rss_mb')} MB); "
          f"model saved to {args.out}", file=text_stream(args))
    return 0
