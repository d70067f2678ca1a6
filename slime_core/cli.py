"""The `slime` command line: attack, eval, build, pool.

Every command reads the default bundle (models/default) unless --bundle says otherwise. Errors the
user can fix print one line and exit with status 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from slime_core.errors import SlimeError


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_attack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, default=None, help="attacker bundle folder (default: models/default)")
    p.add_argument("--attacker", default=None, help="attacker whose bundle to use: models/<NAME>/ (lite2-minilm: models/default)")
    p.add_argument("--victim", default="lite0", help="victim image encoder (lite2 = the no-alignment oracle)")
    p.add_argument("--method", default="ridge", choices=("ridge", "lstsq", "procrustes"),
                   help="alignment map: ridge (default), lstsq (the paper's one-step least squares), procrustes")
    p.add_argument("--seed", type=int, default=0, help="which N pool images are the leaked pairs")
    p.add_argument("--pool-data", type=Path, default=None,
                   help="dataset folder holding the pool images/captions (default: ../shared/data/flickr8k_subset1000)")
    p.add_argument("--no-progress", action="store_true")


def add_caption_options(p: argparse.ArgumentParser) -> None:
    """Caption ROUGE-L in the defence curves, beside a random public caption and the mean embedding's caption."""
    p.add_argument("--caption", default="none",
                   help="writer for caption ROUGE-L in the curves: none | consensus (no LLM, fast) | local | <litellm model>")
    p.add_argument("--caption-mode", default=None, help="tags | neighbours | tags+neighbours")


def load_samples(args):
    from slime_core.data import load_folder

    return load_folder(args.data, args.split)


def cmd_attack(args) -> int:
    from slime_core.pipeline import Attacker
    from slime_core.write import make_writer

    if sum(x is not None for x in (args.image, args.embedding, args.data)) != 1:
        raise SlimeError("give --image PATH, --embedding FILE.npy or --data DIR.")
    from slime_core.uploads import load_embedding_file

    # bad files are refused before the bundle loads
    emb = load_embedding_file(args.embedding) if args.embedding is not None else None
    pool = load_embedding_file(args.victim_pool, "victim pool file") if args.victim_pool is not None else None
    attacker = Attacker(args.bundle, args.pool_data)
    if pool is not None:
        attacker.add_victim_pool(args.victim, pool)
    writer = make_writer(args.caption, args.caption_mode)
    graph = None
    if args.scene_graph == "tags":
        graph = "tags"
    elif args.scene_graph:
        from slime_core.infer import VLMInferrer

        graph = VLMInferrer(args.scene_graph)
    run = dict(victim=args.victim, n_align=args.n_align, k=args.k, method=args.method, seed=args.seed, writer=writer,
               scene_graph=graph, final_from=tuple(p for p in (args.final_caption or "").split(",") if p))
    if args.image is not None:
        results = [attacker.attack(image=str(args.image), **run)]
    elif args.embedding is not None:
        results = [attacker.attack(embedding=row, name=f"{args.embedding}[{i}]", **run)
                   for i, row in enumerate(np.atleast_2d(emb))]
    else:
        from tqdm.auto import tqdm

        samples = [s for s in load_samples(args) if s.path is not None]
        attacker.embed(args.victim, [str(s.path) for s in samples], progress=not args.no_progress)  # one batched pass
        results = [attacker.attack(image=str(s.path), name=s.name, **run)
                   for s in tqdm(samples, desc="attacking", disable=args.no_progress)]
    dicts = [r.to_dict() for r in results]
    if args.format == "jsonl":
        print("\n".join(json.dumps(d) for d in dicts))
    elif args.format == "json":
        print(json.dumps(dicts[0] if len(dicts) == 1 else dicts, indent=2))
    else:
        for d in dicts:
            print(f"{d['image']}  (victim {d['victim']} -> {d['attacker']}, N={d['n_align']}, "
                  f"alignment cosine {d['alignment_cosine']:.3f})")
            print("  tags:      " + ", ".join(f"{t['tag']} ({t['score']:.2f})" for t in d["tags"]))
            print("  neighbours: " + ", ".join(f"{n['image']} ({n['score']:.2f})" for n in d["neighbors"]))
            if d["caption"] is not None:
                print(f"  caption:   {d['caption']}")
            if d["scene_graph"] is not None:
                g = d["scene_graph"]
                rels = "; ".join(" ".join(r) for r in g["relations"] + g["raw_relations"])
                print(f"  scene graph: objects {', '.join(g['objects'])}; relations {rels or '-'}; scene {g['scene'] or '-'}")
            if d["final_caption"] is not None:
                print(f"  final caption: {d['final_caption']}")
    return 0


def cmd_eval(args) -> int:
    from slime_core.evaluate import check_grid, evaluate, format_table
    from slime_core.pipeline import Attacker
    from slime_core.write import make_writer

    attacker = Attacker(args.bundle, args.pool_data)
    check_grid(args.n_align, args.k, len(attacker.pool_attack))
    writer = make_writer(args.caption, args.caption_mode)
    samples = load_samples(args)
    if args.limit:
        samples = samples[: args.limit]
    result = evaluate(attacker, samples, args.victim, args.n_align, args.k, args.method, args.seed, writer,
                      n_boot=args.bootstrap, progress=not args.no_progress,
                      final_from=tuple(p for p in (args.final_caption or "").split(",") if p))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.format == "json" else format_table(result))
    return 0


def cmd_build(args) -> int:
    from slime_core.build import BuildConfig, build

    cfg = BuildConfig(data=args.data, widen_vocab=args.widen_vocab, tag_backend=args.tags, seed=args.seed,
                      victims=None if args.victims is None else tuple(v for v in args.victims.split(",") if v.strip()))
    cfg.out = args.out or cfg.out
    cfg.attacker = args.attacker or cfg.attacker
    build(cfg, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_pool(args) -> int:
    """List the public pool images, so a team can embed them with its own service (--victim-pool)."""
    from slime_core.bundle import load_bundle

    b = load_bundle(args.bundle)
    for name in b.pool["images"]:
        print(name)
    return 0


def _defence_setup(args):
    """Attacker, test samples and the shared curve set-up for `defend` and `report`."""
    from slime_core.curves import prepare
    from slime_core.data import load_folder
    from slime_core.pipeline import Attacker
    from slime_core.write import make_writer

    writer = make_writer(args.caption, args.caption_mode)  # a bad writer/mode fails before the slow part

    attacker = Attacker(args.bundle, args.pool_data)
    samples = [s for s in load_folder(args.data or attacker.data, args.split) if s.path is not None]
    if args.limit:
        samples = samples[: args.limit]
    setup = prepare(attacker, samples, args.victim, args.n_align, args.k, args.method, args.seed, args.bootstrap,
                    progress=not args.no_progress, writer=writer)
    return attacker, samples, setup


def cmd_defend(args) -> int:
    """Leakage vs utility of one defence at each strength, the attacker refitting on defended pairs."""
    from slime_core.curves import curve, figure, format_table
    from slime_core.defend import make_defence, parse_strengths, spec
    from slime_core.report import jsonable

    spec(args.defence)
    strengths = parse_strengths(args.strength) if args.strength else list(spec(args.defence).default_strengths)
    kwargs = {"delta": args.delta, "calibration": args.calibration} if args.defence == "gaussian" else {}
    for s in strengths:  # fail on a bad strength before the slow set-up
        make_defence(args.defence, s, args.defence_seed, **kwargs)
    _, _, setup = _defence_setup(args)
    rows = curve(setup, args.defence, strengths, args.defence_seed, **kwargs)
    text = json.dumps(jsonable(rows), indent=2)  # 'inf' strengths as strings: standard JSON
    if args.output:
        Path(args.output).write_text(text)
    if args.figure:
        figure(rows).write_html(str(args.figure), include_plotlyjs=True)
    print(text if args.format == "json" else format_table(rows))
    return 0


def cmd_report(args) -> int:
    """Self-contained HTML audit report (plus JSON beside it)."""
    from slime_core.defend import DEFENCES, make_defence, parse_strengths, spec
    from slime_core.report import build_report, paper_figures_path, write_report

    names = [] if args.no_defences else [d.strip() for d in (args.defence or "").split(",") if d.strip()] or list(DEFENCES)
    for d in names:
        spec(d)
    if args.strength and len(names) != 1:
        raise SlimeError("--strength needs exactly one --defence.")
    grid = {d: (parse_strengths(args.strength) if args.strength else list(spec(d).default_strengths)) for d in names}
    for d, ss in grid.items():
        for s in ss:
            make_defence(d, s)
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise SlimeError(f"--out {out} should end in .html (the JSON goes beside it).")
    attacker, samples, setup = _defence_setup(args)
    report = build_report(attacker, samples, args.victim, grid, args.n_aligns, args.ks, args.n_align, args.k,
                          args.method, args.seed, args.examples, args.bootstrap,
                          args.paper_figures or paper_figures_path(), setup=setup,
                          progress=not args.no_progress)
    html_path, json_path = write_report(report, out)
    print(f"wrote {html_path} and {json_path}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="slime", description="Semantic leakage from image embeddings (SLImE).")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("attack", help="attack one image, one embedding file, or every image of a dataset folder")
    p.add_argument("--image", type=Path)
    p.add_argument("--embedding", type=Path, help=".npy with one victim embedding (or one per row)")
    p.add_argument("--victim-pool", type=Path, help=".npy of the victim's embeddings of the pool images, in `slime pool` order")
    p.add_argument("--data", type=Path, help="dataset folder (captions.jsonl + images/)")
    p.add_argument("--split", default="test")
    p.add_argument("--n-align", type=int, default=300)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--caption", default="none", help="none | local | consensus | <litellm model>")
    p.add_argument("--caption-mode", default=None, help="tags | neighbours | tags+neighbours")
    p.add_argument("--scene-graph", default=None, help="tags (offline, from the retrieved tags) | <litellm VLM model>")
    p.add_argument("--final-caption", default=None,
                   help="comma-separated scene-graph parts (objects,relations,scene) to write a final caption from")
    p.add_argument("--format", default="text", choices=("text", "json", "jsonl"))
    add_attack_options(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("eval", help="leakage on a labelled split beside the prior baselines")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--n-align", type=int_list, default=[10, 30, 100, 300])
    p.add_argument("--k", type=int_list, default=[1, 5, 10, 20])
    p.add_argument("--caption", default="none", help="score captions too: consensus | local | <litellm model>")
    p.add_argument("--caption-mode", default=None)
    p.add_argument("--final-caption", default=None,
                   help="also score a caption written from these scene-graph parts (objects,relations,scene; LLM writers)")
    p.add_argument("--limit", type=int, default=0, help="first L images only")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--format", default="text", choices=("text", "json"))
    p.add_argument("--output", type=Path, help="also write the JSON result here")
    add_attack_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("build", help="train the attacker's retriever and write a bundle")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--attacker", default=None, help="attacker dual encoder (default lite2-minilm)")
    p.add_argument("--widen-vocab", type=Path, default=None, help="captions.jsonl folder whose tags join the vocabulary")
    p.add_argument("--tags", default="spacy", choices=("spacy", "stanza"))
    p.add_argument("--victims", default=None, help="comma-separated victims whose pool embeddings the bundle keeps "
                   "(also training augmentation); '' for none (default: the attacker's registry list)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_build)

    from slime_core.cli_paper import add_commands

    add_commands(sub)  # data coco, tags

    p = sub.add_parser("pool", help="list the public pool images in bundle order")
    p.add_argument("--bundle", type=Path, default=None)
    p.set_defaults(func=cmd_pool)

    p = sub.add_parser("defend", help="leakage vs utility of a defence applied before embeddings leave the owner")
    p.add_argument("--defence", required=True, help="noise | gaussian | laplace | rotation | shuffle | pca | projection | quantise")
    p.add_argument("--strength", default=None, help="comma-separated strengths (default: the defence's own grid); 'inf' = no DP noise")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the attacker's data folder)")
    p.add_argument("--split", default="test")
    p.add_argument("--final-caption", default=None,
                   help="also score a caption written from these scene-graph parts (objects,relations,scene; LLM writers)")
    p.add_argument("--limit", type=int, default=0, help="first L images only")
    p.add_argument("--n-align", type=int, default=300)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--defence-seed", type=int, default=0, help="the owner's secret key / noise seed")
    p.add_argument("--delta", type=float, default=1e-5, help="delta of the Gaussian mechanism")
    p.add_argument("--calibration", default="analytic", choices=("analytic", "classic"), help="Gaussian mechanism calibration")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--format", default="text", choices=("text", "json"))
    p.add_argument("--output", type=Path, help="also write the JSON here")
    p.add_argument("--figure", type=Path, help="also write the plotly chart here (.html, self-contained)")
    add_caption_options(p)
    add_attack_options(p)
    p.set_defaults(func=cmd_defend)

    p = sub.add_parser("report", help="self-contained HTML audit report (plus JSON)")
    p.add_argument("--out", type=Path, default=Path("report.html"))
    p.add_argument("--defence", default=None, help="comma-separated defences for the curves (default: all)")
    p.add_argument("--no-defences", action="store_true", help="leave the defence curves out")
    p.add_argument("--strength", default=None, help="strengths, with exactly one --defence")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--n-aligns", type=int_list, default=[10, 30, 100, 300], help="N values for alignment cosine vs N")
    p.add_argument("--ks", type=int_list, default=[1, 5, 10, 20], help="k values for leakage per k")
    p.add_argument("--n-align", type=int, default=300, help="N for the examples and the defence curves")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--examples", type=int, default=6)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--paper-figures", type=Path, default=None, help="JSON of the paper's figures, transcribed by hand, shown labelled as the paper's "
                        "(default: $SLIME_PAPER_FIGURES)")
    add_caption_options(p)
    add_attack_options(p)
    p.set_defaults(func=cmd_report)

    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if hasattr(args, "bundle") and hasattr(args, "attacker") and args.command != "build":
            from slime_core.cli_paper import select_bundle

            select_bundle(args)  # --attacker picks models/<NAME>/; the bundle must match it and this process's encoders
        from slime_core.remote import command_scope

        with command_scope():  # every remote call of this command shares one deadline ($SLIME_REMOTE_DEADLINE)
            return args.func(args)
    except SlimeError as err:
        from slime_core.errors import mask_secrets

        print(f"slime {args.command}: error: {mask_secrets(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
