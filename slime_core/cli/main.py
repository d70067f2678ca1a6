"""The `slime` command line: attack, eval, build, pool, defend, report (and data coco, tags in cli_paper).

Each command builds an `AttackSpec` (checked once), checks its output paths, then calls into the library
and prints. Every command reads the default bundle (models/default) unless --bundle says otherwise. Errors
the user can fix print one line and exit with status 2; nothing prints a traceback for bad input.
Commands import their stages when they run, so `slime --help` and argument errors answer in ~0.15 s, before
torch is imported.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from slime_core.attack_spec import AttackSpec
from slime_core.cli import args as cli_args
from slime_core.cli import paper
from slime_core.infra.errors import SlimeError, mask_output
from slime_core.infra.files import check_writable
from slime_core.infra.output_gate import write_text
from slime_core.present.serialise import dumps
from slime_core.stages.uploads import load_embedding_file


def attack_spec(args, many: bool = False) -> AttackSpec:
    """The command's AttackSpec; `many`: N and k may be lists (eval, report)."""
    spec = AttackSpec(args.victim, args.n_align, args.k, args.method, args.seed)
    return spec if many else spec.single()


def final_parts(args) -> tuple[str, ...]:
    from slime_core.stages.write import check_final_parts

    return check_final_parts(args.final_caption or "")


def writer_from_args(args):
    """The command's caption writer; `--caption auto` is MBR where the public pool's captions are, else local."""
    from slime_core.infra import settings
    from slime_core.stages.write import auto_writer_spec
    from slime_core.stages.write import make_writer as make

    spec = args.caption
    if spec == "auto":
        data = args.pool_data or settings.data_dir()
        spec = auto_writer_spec(data != settings.DEMO_DATA and (data / "captions.jsonl").is_file())
    return make(spec, args.caption_mode)


def make_attacker(args):
    from slime_core.pipeline import Attacker

    return Attacker(args.bundle, args.pool_data)


def lowfi_outputs(args, names: list[str] | None) -> list[Path]:
    """Where `--lowfi` writes each attacked image's PNG, every path checked writable before any slow work ([] without
    --lowfi). One image (`names` None): --lowfi-out, else <image stem>_lowfi.png (lowfi.png for an embedding) in the
    current folder. Several: `names` (<image stem>_lowfi.png of a --data folder's images, lowfi_<row>.png of an
    embedding file's rows) in the folder --lowfi-out, else the current folder."""
    from slime_core.infra.files import check_writable_folder

    if args.lowfi == "none":
        if args.lowfi_out is not None:
            raise SlimeError("--lowfi-out needs --lowfi offline or kandinsky.")
        return []
    if names is None:  # one image
        default = f"{args.image.stem}_lowfi.png" if args.image is not None else "lowfi.png"
        return [check_writable(args.lowfi_out or Path(default), "--lowfi-out", (".png",))]
    folder = args.lowfi_out or Path(".")
    if folder.suffix.lower() == ".png":
        raise SlimeError(f"--lowfi-out {folder}: {len(names)} images are attacked, one PNG each; name a folder.")
    check_writable_folder(folder, "--lowfi-out")
    folder.mkdir(parents=True, exist_ok=True)
    return [check_writable(folder / name, "--lowfi-out") for name in names]


def save_lowfi(results, paths) -> SlimeError | None:
    """Each result's generated image to its PNG; the path goes into the result's "lowfi" record. A failed write
    is returned (raised by the caller after the results are printed)."""
    for result, path in zip(results, paths):
        try:
            result.lowfi_image.save(path, format="PNG")
        except OSError as err:  # disk full, ...: the attack's text is still printed, then this line
            result.lowfi["image"] = None
            return SlimeError(f"--lowfi-out {path} could not be written ({err.strerror or type(err).__name__}).")
        result.lowfi["image"] = str(path)
    return None


def cmd_attack(args) -> int:
    if sum(x is not None for x in (args.image, args.embedding, args.data)) != 1:
        raise SlimeError("give --image PATH, --embedding FILE.npy or --data DIR.")
    spec, final_from = attack_spec(args), final_parts(args)
    # bad files and unwritable outputs are refused before the bundle loads
    emb = load_embedding_file(args.embedding) if args.embedding is not None else None
    pool = load_embedding_file(args.victim_pool, "victim pool file", names=True) if args.victim_pool is not None else None
    if args.image is not None:
        from slime_core.stages.encoders import load_image

        load_image(args.image)  # unreadable, tiny or oversized: refused before the bundle loads
    samples = [s for s in load_samples(args) if s.path is not None] if args.data is not None else None
    rows = len(np.atleast_2d(emb)) if emb is not None else 1
    png_paths = lowfi_outputs(args, [f"{Path(s.name).stem}_lowfi.png" for s in samples] if samples is not None
                              else [f"lowfi_{i}.png" for i in range(rows)] if rows > 1 else None)
    attacker = make_attacker(args)
    if pool is not None:  # rows matched by the file's image names where it has them; replaces the bundle's own pool
        attacker.add_victim_pool(args.victim, *pool, what=str(args.victim_pool))
    spec.within(attacker)
    maker = None
    if png_paths:
        from slime_core.stages import lowfi

        maker = lowfi.make_lowfi(args.lowfi, attacker.bundle.image_encoder)  # missing weights: one line, before the work
    writer = writer_from_args(args)
    graph = None
    if args.scene_graph == "tags":
        graph = "tags"
    elif args.scene_graph:
        from slime_core.stages.infer import VLMInferrer

        graph = VLMInferrer(args.scene_graph)
    run = dict(spec=spec, writer=writer, scene_graph=graph, final_from=final_from, lowfi=maker)
    if args.image is not None:
        results = [attacker.attack(image=str(args.image), **run)]
    elif args.embedding is not None:
        results = [attacker.attack(embedding=row, name=f"{args.embedding}[{i}]", **run)
                   for i, row in enumerate(np.atleast_2d(emb))]
    else:
        attacker.embed(args.victim, [str(s.path) for s in samples], progress=not args.no_progress)  # one batched pass
        results = [attacker.attack(image=str(s.path), name=s.name, **run)
                   for s in tqdm(samples, desc="attacking", disable=args.no_progress)]
    failed = save_lowfi(results, png_paths)
    print_attacks([r.to_dict() for r in results], args.format)
    if failed is not None:
        raise failed
    return 0


def print_attacks(dicts: list[dict], fmt: str) -> None:
    if fmt == "jsonl":
        print("\n".join(json.dumps(d) for d in dicts))
    elif fmt == "json":
        print(json.dumps(dicts[0] if len(dicts) == 1 else dicts, indent=2))
    else:
        for d in dicts:
            print(attack_text(d))


def attack_text(d: dict) -> str:
    lines = [f"{d['image']}  (victim {d['victim']} -> {d['attacker']}, N={d['n_align']}, "
             f"alignment cosine {d['alignment_cosine']:.3f})",
             "  tags:      " + ", ".join(f"{t['tag']} ({t['score']:.2f})" for t in d["tags"]),
             "  neighbours: " + ", ".join(f"{n['image']} ({n['score']:.2f})" for n in d["neighbors"])]
    if d["caption"] is not None:
        lines.append(f"  caption:   {d['caption']}")
    if d["scene_graph"] is not None:
        g = d["scene_graph"]
        rels = "; ".join(" ".join(r) for r in g["relations"] + g["raw_relations"])
        lines.append(f"  scene graph: objects {', '.join(g['objects'])}; relations {rels or '-'}; scene {g['scene'] or '-'}")
    if d["final_caption"] is not None:
        lines.append(f"  final caption: {d['final_caption']}")
    if d.get("lowfi"):
        lo = d["lowfi"]
        lines.append(f"  low-fidelity image: {lo['image']} ({lo['method']}, {lo['seconds']:.2f} s)")
    if d.get("objects"):
        o, names = d["objects"], lambda xs: ", ".join(xs) if xs else "-"  # noqa: E731
        lines.append(f"  objects: tags {names(o['tags'])}; generated image {names(o['generated'])}; "
                     f"nearest photo {names(o['nearest'])}; all {names(o['union'])}")
    return "\n".join(lines)


def load_samples(args, attacker=None):
    from slime_core.stages.data import load_folder

    samples = load_folder(args.data or attacker.data, args.split)
    return samples[: args.limit] if getattr(args, "limit", 0) else samples


def cmd_eval(args) -> int:
    from slime_core.experiments.evaluation import evaluate
    from slime_core.present.tables import evaluation_table
    spec, final_from = attack_spec(args, many=True), final_parts(args)
    if args.output:
        check_writable(args.output, "--output")
    attacker = make_attacker(args)
    spec.within(attacker)
    writer = writer_from_args(args)
    from slime_core.stages import lowfi
    maker = lowfi.make_lowfi(args.lowfi, attacker.bundle.image_encoder) if args.lowfi != "none" else None
    samples = load_samples(args)
    result = evaluate(attacker, samples, spec=spec, writer=writer, n_boot=args.bootstrap, progress=not args.no_progress,
                      final_from=final_from, lowfi=maker).to_dict()
    print(json.dumps(result, indent=2) if args.format == "json" else evaluation_table(result))  # kept if the file fails
    if args.output:
        write_text(args.output, json.dumps(result, indent=2), "--output")
    return 0


def cmd_build(args) -> int:
    from slime_core.infra.files import check_writable_folder
    from slime_core.training.build import BuildConfig, build, output_folder

    cfg = BuildConfig(data=args.data, widen_vocab=args.widen_vocab, tag_backend=args.tags, seed=args.seed,
                      min_count=args.min_count, augment=args.augment,
                      victims=None if args.victims is None else tuple(v for v in args.victims.split(",") if v.strip()))
    cfg.out = args.out or cfg.out
    cfg.attacker = args.attacker or cfg.attacker
    check_writable_folder(output_folder(cfg), "--out")  # the default folder too (a traceback until 2026-12)
    build(cfg, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_pool(args) -> int:
    """List the public pool images, so a team can embed them with its own service (--victim-pool)."""
    from slime_core.stages.bundle import load_bundle

    for name in load_bundle(args.bundle).pool["images"]:
        print(name)
    return 0


def defence_grid(names: list[str], strength: str | None, **kwargs) -> dict[str, list[float]]:
    """name -> strengths, every strength checked by building its defence (fast) before any slow work."""
    from slime_core.stages.defences import create_defence, defence_spec, parse_strengths

    for d in names:
        defence_spec(d)
    if strength and len(names) != 1:
        raise SlimeError("--strength needs exactly one --defence.")
    grid = {d: (parse_strengths(strength) if strength else list(defence_spec(d).default_strengths)) for d in names}
    for d, ss in grid.items():
        for s in ss:
            create_defence(d, s, **kwargs)
    return grid


def defence_setup(args, spec: AttackSpec, *more: AttackSpec, attacker=None):
    """Attacker (`attacker`, else the command's), test samples and the shared curve set-up for `defend` and
    `report`; `spec` and `more` are checked against the attacker (N within its pool, k within its vocabulary)
    before the slow set-up."""
    from slime_core.experiments.defence_curves import prepare
    writer = writer_from_args(args)  # a bad writer/mode fails before the slow part
    attacker = attacker or make_attacker(args)
    for s in (spec, *more):
        s.within(attacker)
    samples = [s for s in load_samples(args, attacker) if s.path is not None]
    setup = prepare(attacker, samples, spec, n_boot=args.bootstrap, progress=not args.no_progress, writer=writer)
    return attacker, samples, setup


def cmd_defend(args) -> int:
    """Leakage vs utility of one defence at each strength, the attacker refitting on defended pairs."""
    from slime_core.experiments.defence_curves import curve
    from slime_core.present.figures import defence_figure
    from slime_core.present.tables import defence_table
    from slime_core.stages.defences import defence_options

    spec = attack_spec(args)
    kwargs = defence_options(args.defence, delta=args.delta, calibration=args.calibration)
    strengths = defence_grid([args.defence], args.strength, seed=args.defence_seed, **kwargs)[args.defence]
    for path, what in ((args.output, "--output"), (args.figure, "--figure")):
        if path:
            check_writable(path, what)
    _, _, setup = defence_setup(args, spec)
    rows = curve(setup, args.defence, strengths, args.defence_seed, **kwargs)
    text = dumps(rows)  # 'inf' strengths as strings: standard JSON
    print(text if args.format == "json" else defence_table(rows))  # printed first: kept if a file fails
    if args.output:
        write_text(args.output, text, "--output")
    if args.figure:
        write_text(args.figure, defence_figure(rows).to_html(include_plotlyjs=True), "--figure")
    return 0


def cmd_report(args) -> int:
    """Self-contained HTML audit report (plus JSON beside it)."""
    from slime_core.experiments.audit import build_report, paper_figures_path
    from slime_core.present.html_report import write_report
    from slime_core.stages.attributes import load_attributes
    from slime_core.stages.defences import list_defences

    spec = attack_spec(args)
    grid_spec = AttackSpec(args.victim, args.n_aligns, args.ks, args.method, args.seed)
    names = [] if args.no_defences else [d.strip() for d in (args.defence or "").split(",") if d.strip()] or list_defences()
    strengths = defence_grid(names, args.strength)
    out = check_writable(args.out, "--out", (".html", ".htm"))
    check_writable(out.with_suffix(".json"), "--out's JSON")
    attributes = load_attributes(args.attributes) if args.attributes is not None else None  # a bad file: one line
    attacker = make_attacker(args)
    if attributes is not None:
        attributes = load_attributes(args.attributes, attacker.bundle.tags)  # every attribute must name some tag
    maker = None
    if args.lowfi != "none":
        from slime_core.stages import lowfi

        maker = lowfi.make_lowfi(args.lowfi, attacker.bundle.image_encoder)  # missing weights: one line, before the work
    attacker, samples, setup = defence_setup(args, spec, grid_spec, attacker=attacker)  # the grid checked first
    report = build_report(attacker, samples, grid=grid_spec, n_align=spec.n, k=spec.top_k, defences=strengths,
                          n_examples=args.examples, n_boot=args.bootstrap,
                          paper_figures=args.paper_figures or paper_figures_path(), setup=setup,
                          progress=not args.no_progress, lowfi=maker, attributes=attributes)
    html_path, json_path = write_report(report, out)
    print(f"wrote {html_path} and {json_path}")
    return 0


def cmd_audit(args) -> int:
    """Every embedding of a store attacked in batches, written as Parquet parts (resumable) plus a summary HTML."""
    from slime_core.experiments import store_audit, store_audit_ray  # noqa: F401 - the second registers "ray"
    from slime_core.present.html_report import store_audit_report, write_report
    from slime_core.stages.attributes import load_attributes
    from slime_core.stages.stores import open_store

    spec = attack_spec(args)
    run = store_audit.engine(args.engine)
    # everything that can be wrong with the inputs is said before the bundle loads, and all of it before the work
    store = open_store(args.embeddings, args.column, args.id_column)
    out = store_audit.check_out(args.out)
    summary_path = args.summary or out / store_audit.SUMMARY
    if args.summary is not None:
        check_writable(summary_path, "--summary", (".html", ".htm"))
    attributes = load_attributes(args.attributes)
    pool = load_embedding_file(args.victim_pool, "victim pool file", names=True) if args.victim_pool is not None else None
    attacker = make_attacker(args)
    if pool is not None:
        attacker.add_victim_pool(args.victim, *pool, what=str(args.victim_pool))
    spec.within(attacker)
    attributes = load_attributes(args.attributes, attacker.bundle.tags)  # every attribute must name some tag
    writer = writer_from_args(args) if args.caption != "none" else None
    fit = attacker.alignment(args.victim, spec.n, spec.method, spec.seed)
    store_audit.check_dim(store, fit, args.victim)
    job = store_audit.AuditJob(store, out, args.victim, spec.n, spec.top_k, attributes, spec.method, spec.seed,
                               args.batch_size, args.victim_pool, writer, attacker.bundle.attacker,
                               store_audit.bundle_digest(attacker.bundle))
    engine_options = {"address": args.address, "workers": args.workers} if args.engine == "ray" else {}
    summary = run(job, attacker, fit, progress=not args.no_progress, **engine_options)
    html_path, _ = write_report(store_audit_report(summary), summary_path)
    print(f"wrote {summary['rows_scored']:,} rows to {out} ({summary['rows_skipped']:,} skipped, "
          f"{summary['rows_resumed']:,} from an earlier run); summary: {html_path}")
    return 0


COMMANDS = {"attack": cmd_attack, "eval": cmd_eval, "build": cmd_build, "pool": cmd_pool, "defend": cmd_defend,
            "report": cmd_report, "audit": cmd_audit}


def parser():
    return cli_args.build_parser(COMMANDS, more=(paper.add_commands,))


def main(argv: list[str] | None = None) -> int:
    """Run one command with stdout and stderr behind the output gate (every configured key masked, in every
    encoding); a reader that closes the pipe early (`slime pool | head -1`) ends it quietly (status 141)."""
    from slime_core.infra.output_gate import masked_streams, quiet_broken_pipe

    try:
        with masked_streams():
            return _main(argv)
    except BrokenPipeError:
        return quiet_broken_pipe()


def _main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(format="%(message)s")  # progress notes on stderr; every other logger stays at WARNING
    logging.getLogger("slime_core.experiments").setLevel(logging.INFO)
    try:
        if hasattr(args, "bundle") and hasattr(args, "attacker") and args.command != "build":
            from slime_core.cli.paper import select_bundle

            select_bundle(args)  # --attacker picks models/<NAME>/; the bundle must match it and this process's encoders
        from slime_core.infra.remote import command_scope

        with command_scope():  # every remote call of this command shares one deadline ($SLIME_REMOTE_DEADLINE)
            return args.func(args)
    except SlimeError as err:
        from slime_core.infra.errors import mask_secrets

        message = " ".join(part.strip() for part in mask_secrets(err).splitlines() if part.strip())
        print(f"slime {args.command}: error: {message}", file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as err:  # the disk filled, a file vanished mid-run: the environment's doing, one line
        if isinstance(err, BrokenPipeError):
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"slime {args.command}: error: {mask_output(where)}{err.strerror or type(err).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
