"""CLI commands for the paper's set-up: `slime data coco` (COCO -> a dataset folder) and `slime tags`
(tag extraction and appendix-C statistics). Thin: flags and printing; the work is in data.py and tags.py."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from slime_core.cli.args import LIMIT, SEED, count
from slime_core.infra.errors import SlimeError
from slime_core.stages import data
from slime_core.stages.data import load_folder
from slime_core.stages.tags import list_parsers, make_parser, tag_statistics, tags_of_samples


def cmd_data_coco(args) -> int:
    if bool(args.karpathy) == bool(args.captions):
        raise SlimeError("give --karpathy dataset_coco.json, or --captions TRAIN.json VAL.json (COCO 2017).")
    need = not args.captions_only
    data.check_dataset_out(args.out, args.overwrite)  # before reading COCO: a non-empty --out is never overwritten
    if args.karpathy:
        every = data.load_karpathy(args.karpathy, args.images, require_images=need)
        train = [s for s in every if s.split in ("train", "restval")]
        held = [s for s in every if s.split == args.karpathy_split]
    else:
        if len(args.captions) != 2:
            raise SlimeError("--captions takes two files: the training captions, then the held-out ones "
                             "(captions_train2017.json captions_val2017.json).")
        folders = args.images or [None]
        dirs = folders if len(folders) == 2 else folders * 2
        train = data.load_coco(args.captions[0], dirs[0], require_images=need)
        held = data.load_coco(args.captions[1], dirs[1], require_images=need)
    if args.train_limit:
        train = train[: args.train_limit]
    held_file = args.karpathy or args.captions[1]
    try:
        samples = data.paper_protocol(train, held, args.dev, args.test, args.seed)
    except SlimeError as err:
        raise SlimeError(f"{held_file}: {err} (--dev/--test)") from None
    out = data.write_folder(samples, args.out, link=not args.copy, overwrite=args.overwrite,
                            log=lambda m: print(m, file=sys.stderr))
    counts = {s: sum(x.split == s for x in samples) for s in ("train", "dev", "test")}
    print(f"{out}: {counts['train']} train, {counts['dev']} dev, {counts['test']} test images "
          f"({sum(x.path is None for x in samples)} without an image file)")
    return 0


def cmd_tags(args) -> int:
    from slime_core.infra.files import check_writable
    from slime_core.infra.output_gate import write_text

    if args.output:
        check_writable(args.output, "--output")  # before the parser loads and the captions are tagged
    samples = load_folder(args.data, args.split, require_images=False)
    if args.limit:
        samples = samples[: args.limit]
    kwargs = {"n_process": args.processes} if args.backend == "spacy" else ({"model_dir": args.stanza_dir} if args.stanza_dir else {})
    t0 = time.perf_counter()
    parser = make_parser(args.backend, **kwargs)
    t1 = time.perf_counter()
    per_image = tags_of_samples(samples, parser, progress=not args.no_progress)
    t2 = time.perf_counter()
    n_captions = sum(len(s.captions) for s in samples)
    failed = None
    if args.output:
        try:
            write_text(args.output, "".join(json.dumps({"image": s.name, "tags": dict(c.most_common())}) + "\n"
                                            for s, c in zip(samples, per_image)), "--output")
        except SlimeError as err:
            failed = err  # the statistics below are still printed; then the one-line error
    if args.stats or not args.output or failed:
        stats = tag_statistics(per_image, n_captions) | {
            "backend": args.backend, "parser_load_seconds": round(t1 - t0, 2), "tagging_seconds": round(t2 - t1, 2),
            "captions_per_second": round(n_captions / max(t2 - t1, 1e-9), 1)}
        if args.format == "json":
            print(json.dumps(stats, indent=2))
        else:
            tpi = stats["tags_per_image"]
            print(f"{stats['images']} images, {n_captions} captions, tagged with {args.backend} in "
                  f"{stats['tagging_seconds']}s ({stats['captions_per_second']} captions/s)")
            print(f"tags per image: mean {tpi['mean']:.2f}, median {tpi['median']:.0f}, sd {tpi['std']:.2f}, "
                  f"min {tpi['min']}, max {tpi['max']}; images without tags: {stats['images_without_tags']}")
            print(f"unique tags: {stats['unique_tags']} = {stats['unique_pairs']} pairs (modifier-noun) + "
                  f"{stats['unique_triples']} triples (subject-verb-object, noun-prep-noun) + {stats['unique_quads']} "
                  f"quads (subject-verb-prep-object); on one image only: {stats['tags_on_one_image']}")
            print("most common: " + ", ".join(f"{t} ({n})" for t, n in stats["most_common"][:10]))
    if failed is not None:
        raise failed
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("data", help="prepare datasets (COCO) as folders that build/eval read")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("coco", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="COCO captions + images -> captions.jsonl + images/ with the paper's splits")
    q.add_argument("--karpathy", type=Path, help="Karpathy's dataset_coco.json (train+restval -> train, its val -> dev/test)")
    q.add_argument("--karpathy-split", default="val", choices=("val", "test"), help="Karpathy split the dev/test images come from")
    q.add_argument("--captions", type=Path, nargs="+", help="captions_train2017.json captions_val2017.json")
    q.add_argument("--images", type=Path, nargs="*", help="image folder(s): one root, or train and val folders")
    q.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    q.add_argument("--dev", type=count(0, "0 or more"), default=500, help="dev images")
    q.add_argument("--test", type=count(0, "0 or more"), default=500, help="test images")
    q.add_argument("--seed", type=SEED, default=0, help="split seed")
    q.add_argument("--train-limit", type=LIMIT, default=0, help="first T training images only (a quick run)")
    q.add_argument("--captions-only", action="store_true", help="images may be absent (tag statistics only)")
    q.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    q.add_argument("--overwrite", action="store_true", help="replace the dataset in a non-empty --out (refused without)")
    q.set_defaults(func=cmd_data_coco)

    p = sub.add_parser("tags", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="extract relational tags from a dataset's captions; --stats for appendix-C statistics")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (captions.jsonl; images not needed)")
    p.add_argument("--split", default=None, help="split to read (None: all)")
    p.add_argument("--backend", default="spacy", choices=list_parsers(), help="tag extraction backend")
    p.add_argument("--stanza-dir", default=None, help="folder with Stanza's English models (backend stanza)")
    p.add_argument("--processes", type=count(1, "1 to 64", 64), default=1, help="spaCy worker processes")
    p.add_argument("--limit", type=LIMIT, default=0, help="first L images only (0 = all)")
    p.add_argument("--stats", action="store_true", help="print tag statistics (default when no --output)")
    p.add_argument("--output", type=Path, help="write per-image tags as JSONL")
    p.add_argument("--format", default="text", choices=("text", "json"), help="output format")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.set_defaults(func=cmd_tags)


def select_bundle(args: argparse.Namespace) -> None:
    """--attacker NAME: the bundle in models/<its folder>/ unless --bundle names one; either way the
    bundle's manifest must say that attacker, and its encoders must match this process's."""
    from slime_core.stages.bundle import check_bundle, resolve_bundle

    args.bundle = resolve_bundle(args.bundle, args.attacker)
    check_bundle(args.bundle, args.attacker, getattr(args, "victim", None))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `slime data` / `slime tags`")
