"""The `slime` command line's options: one parser, every option with its help and its default.

The commands themselves live in `cli.py` (a call into the library, then printing); lists of N and k
arrive as text and are parsed and checked by `attack_spec.AttackSpec`, so the CLI, the app and the
report refuse the same mistake with the same message.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slime_core import __version__
from slime_core.stages.align import list_alignment_methods
from slime_core.stages.defences import list_defences
from slime_core.stages.lowfi import LOWFI_METHODS
from slime_core.stages.tags import list_parsers
from slime_core.stages.write import list_writers, writer_about

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr ("slime attack: error: ..."), exit status 2, like every
    other refusal of the CLI (`slime CMD --help` still shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def count(minimum: int, what: str, maximum: int | None = None):
    """An argparse type: an integer in minimum..maximum (a count, a seed), refused in one line otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number ({what})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum} ({what})")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is above {maximum} ({what})")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (a probability such as the Gaussian mechanism's delta)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


SEED = count(0, "a seed: 0 to 2**32-1", 2**32 - 1)
LIMIT = count(0, "0 = all, else the number of images")
POSITIVE = count(1, "1 or more")


def add_attack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, default=None, help="attacker bundle folder (None: models/default)")
    p.add_argument("--attacker", default=None,
                   help="attacker whose bundle to use: models/<NAME>/ (lite2-minilm: models/default)")
    p.add_argument("--victim", default="lite0", help="victim image encoder (lite2 = the no-alignment oracle)")
    p.add_argument("--method", default="ridge", choices=list_alignment_methods(),
                   help=f"alignment map: {', '.join(list_alignment_methods())} (lstsq: the paper's one-step least squares)")
    p.add_argument("--seed", type=SEED, default=0, help="which N pool images are the leaked pairs")
    p.add_argument("--pool-data", type=Path, default=None,
                   help="dataset folder holding the pool images/captions (None: ../shared/data/flickr8k_8k_224)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def add_caption_options(p: argparse.ArgumentParser, what: str = "caption ROUGE-L in the curves") -> None:
    writers = " | ".join(f"{name} ({writer_about(name)})" for name in list_writers())
    p.add_argument("--caption", default="none",
                   help=f"writer for {what}: none | auto (mbr where the pool's captions are, else local) | {writers} "
                        f"| <litellm model>")
    p.add_argument("--caption-mode", default=None, help="tags | neighbours | tags+neighbours (None: the writer's own)")


def add_split_options(p: argparse.ArgumentParser, data_required: bool = False) -> None:
    p.add_argument("--data", type=Path, required=data_required, default=None,
                   help="dataset folder (captions.jsonl + images/)"
                        + ("" if data_required else "; None: the attacker's data folder"))
    p.add_argument("--split", default="test", help="which split of the dataset to measure on")
    p.add_argument("--limit", type=LIMIT, default=0, help="first L images only (0 = all)")
    p.add_argument("--bootstrap", type=count(1, "1 to 100,000", 100_000), default=1000, help="bootstrap resamples for the 95%% intervals")


FINAL_HELP = "also score a caption written from these scene-graph parts (objects,relations,scene; LLM writers)"


def add_attack(sub) -> None:
    p = sub.add_parser("attack", formatter_class=FORMATTER,
                       help="attack one image, one embedding file, or every image of a dataset folder")
    p.add_argument("--image", type=Path, help="an image file to embed with the victim and attack")
    p.add_argument("--embedding", type=Path, help=".npy with one victim embedding (or one per row)")
    p.add_argument("--victim-pool", type=Path,
                   help=".npy of the victim's embeddings of the pool images, in `slime pool` order")
    p.add_argument("--data", type=Path, help="dataset folder (captions.jsonl + images/): attack every image")
    p.add_argument("--split", default="test", help="split of --data to attack")
    p.add_argument("--n-align", default="300", help="N leaked (victim, attacker) pairs the map is fitted on")
    p.add_argument("--k", default="10", help="number of tags retrieved")
    add_caption_options(p, "the caption")
    p.add_argument("--scene-graph", default=None, help="tags (offline, from the retrieved tags) | <litellm VLM model>")
    p.add_argument("--final-caption", default=None,
                   help="comma-separated scene-graph parts (objects,relations,scene) to write a final caption from")
    p.add_argument("--format", default="text", choices=("text", "json", "jsonl"), help="output format")
    p.add_argument("--lowfi", default="none", choices=("none", *LOWFI_METHODS),
                   help="also generate a low-fidelity image from the aligned embedding and list the objects named by "
                        "the tags, seen in that image and in the nearest public photo: offline (TAEF2 decoder, "
                        "models/lowfi) | kandinsky (Kandinsky 2.2; a ViT-bigG-14 attacker and its weights)")
    p.add_argument("--lowfi-out", type=Path, default=None,
                   help="PNG to write the low-fidelity image to (None: <image stem>_lowfi.png, or lowfi.png for an "
                        "embedding, in the current folder); a folder when several images are attacked")
    add_attack_options(p)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", formatter_class=FORMATTER, help="leakage on a labelled split beside the prior baselines")
    add_split_options(p, data_required=True)
    p.add_argument("--n-align", default="10,30,100,300", help="comma-separated N values (leaked pairs)")
    p.add_argument("--k", default="1,5,10,20", help="comma-separated k values (tags retrieved)")
    add_caption_options(p, "scoring captions too")
    p.add_argument("--final-caption", default=None, help=FINAL_HELP)
    p.add_argument("--format", default="text", choices=("text", "json"), help="output format")
    p.add_argument("--output", type=Path, help="also write the JSON result here")
    p.add_argument("--lowfi", default="none", choices=("none", *LOWFI_METHODS),
                   help="also score the objects detected in each photo's low-fidelity image (offline: about 3 s a photo)")
    add_attack_options(p)


def add_build(sub) -> None:
    p = sub.add_parser("build", formatter_class=FORMATTER, help="train the attacker's retriever and write a bundle")
    p.add_argument("--data", type=Path, required=True, help="dataset folder to train on (captions.jsonl + images/)")
    p.add_argument("--out", type=Path, default=None, help="bundle folder to write (None: models/default)")
    p.add_argument("--attacker", default=None, help="attacker dual encoder (None: lite2-minilm)")
    p.add_argument("--widen-vocab", type=Path, default=None, help="captions.jsonl folder whose tags join the vocabulary")
    p.add_argument("--tags", default="spacy", choices=list_parsers(), help="tag extraction backend")
    p.add_argument("--min-count", type=POSITIVE, default=3,
                   help="a tag joins the vocabulary when at least this many training photos have it")
    p.add_argument("--augment", default="none", choices=("none", "crossfit"),
                   help="crossfit: the heads also train on cross-fitted aligned victim embeddings of the training photos")
    p.add_argument("--victims", default=None, help="comma-separated victims whose pool embeddings the bundle keeps "
                   "(also training augmentation); '' for none (None: the attacker's registry list)")
    p.add_argument("--seed", type=SEED, default=0, help="training seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def add_defend(sub) -> None:
    p = sub.add_parser("defend", formatter_class=FORMATTER,
                       help="leakage vs utility of a defence applied before embeddings leave the owner")
    p.add_argument("--defence", required=True, help=" | ".join(list_defences()))  # read when the parser is built
    p.add_argument("--strength", default=None,
                   help="comma-separated strengths (None: the defence's own grid); 'inf' = no DP noise")
    add_split_options(p)
    p.add_argument("--final-caption", default=None, help=FINAL_HELP)
    p.add_argument("--n-align", default="300", help="N defended leaked pairs the attacker refits on")
    p.add_argument("--k", default="10", help="number of tags retrieved")
    p.add_argument("--defence-seed", type=SEED, default=0, help="the owner's secret key / noise seed")
    p.add_argument("--delta", type=fraction, default=1e-5, help="delta of the Gaussian mechanism")
    p.add_argument("--calibration", default="analytic", choices=("analytic", "classic"),
                   help="Gaussian mechanism calibration")
    p.add_argument("--format", default="text", choices=("text", "json"), help="output format")
    p.add_argument("--output", type=Path, help="also write the JSON here")
    p.add_argument("--figure", type=Path, help="also write the plotly chart here (.html, self-contained)")
    add_caption_options(p)
    add_attack_options(p)


def add_report(sub) -> None:
    p = sub.add_parser("report", formatter_class=FORMATTER, help="self-contained HTML audit report (plus JSON)")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write (the JSON goes beside it)")
    p.add_argument("--defence", default=None, help="comma-separated defences for the curves (None: all)")
    p.add_argument("--no-defences", action="store_true", help="leave the defence curves out")
    p.add_argument("--strength", default=None, help="strengths, with exactly one --defence")
    add_split_options(p)
    p.add_argument("--n-aligns", default="10,30,100,300", help="N values for alignment cosine vs N")
    p.add_argument("--ks", default="1,5,10,20", help="k values for leakage per k")
    p.add_argument("--n-align", default="300", help="N for the examples and the defence curves")
    p.add_argument("--k", default="10", help="k for the examples and the defence curves")
    p.add_argument("--examples", type=count(0, "0 to 1,000", 1000), default=6, help="example images shown with what leaked")
    p.add_argument("--lowfi", default="none", choices=("none", *LOWFI_METHODS),
                   help="show each example's low-fidelity image, generated from its aligned embedding, beside it")
    p.add_argument("--paper-figures", type=Path, default=None,
                   help="JSON of the paper's figures, transcribed by hand, shown labelled as the paper's "
                        "(None: $SLIME_PAPER_FIGURES, else the packaged transcription of the paper's tables)")
    p.add_argument("--attributes", type=Path, default=None,
                   help="JSON table of sensitive attributes for the report's AUC section (None: the packaged one: "
                        "children, people, ...)")
    add_caption_options(p)
    add_attack_options(p)


def add_audit(sub) -> None:
    p = sub.add_parser("audit", formatter_class=FORMATTER,
                       help="attack every embedding of a store (.npy, Parquet, LanceDB): tags and sensitive attributes "
                            "to Parquet")
    p.add_argument("--embeddings", type=Path, required=True,
                   help="the store: .npy (rows, dims), Parquet with an embedding column of lists, or a LanceDB "
                        "table's folder (db/name.lance; the [scale] extra)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder of Parquet part files (e.g. results.parquet/); a killed run resumes there")
    p.add_argument("--victim-pool", type=Path,
                   help="the victim's embeddings of the pool images, in `slime pool` order (.npy, .csv, .parquet)")
    p.add_argument("--column", default="embedding",
                   help="Parquet, LanceDB: the embedding column (LanceDB: 'vector' where there is no 'embedding')")
    p.add_argument("--id-column", default=None, help="Parquet, LanceDB: the column of ids (None: the row number)")
    p.add_argument("--n-align", default="300", help="N leaked (victim, attacker) pairs the map is fitted on")
    p.add_argument("--k", default="10", help="number of tags retrieved per embedding")
    p.add_argument("--batch-size", type=count(1, "1 to 1,000,000", 1_000_000), default=4096,
                   help="rows per batch and per part file (memory grows with it)")
    p.add_argument("--attributes", type=Path, default=None,
                   help="JSON table of sensitive attributes (None: the packaged one: children, people, ...)")
    p.add_argument("--summary", type=Path, default=None, help="summary HTML to write (None: OUT/_summary.html)")
    p.add_argument("--engine", default="local",
                   help="where the batches run: local (this process) or ray (Ray Data actors; the [scale] extra)")
    p.add_argument("--address", default=None,
                   help="--engine ray: a running Ray cluster to join (ray://host:10001 or auto; None: a local Ray)")
    p.add_argument("--workers", type=count(1, "1 to 1,024", 1024), default=2,
                   help="--engine ray: actors holding the attacker, one CPU each")
    add_caption_options(p, "a caption per embedding (slow: a writer call each)")
    add_attack_options(p)


def build_parser(commands: dict, more=()) -> argparse.ArgumentParser:
    """The whole `slime` parser; `commands` maps a command name to the function that runs it; `more`: functions
    that add more commands (cli/paper.py's data coco and tags), after build."""
    ap = OneLineParser(prog="slime", description="Semantic leakage from image embeddings (SLImE).")
    ap.add_argument("--version", action="version", version=f"slime {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in (add_attack, add_eval, add_build):
        add(sub)
    for add in more:
        add(sub)
    p = sub.add_parser("pool", formatter_class=FORMATTER, help="list the public pool images in bundle order")
    p.add_argument("--bundle", type=Path, default=None, help="attacker bundle folder (None: models/default)")
    add_defend(sub)
    add_report(sub)
    add_audit(sub)
    for name, p in sub.choices.items():
        if name in commands:
            p.set_defaults(func=commands[name])
    return ap
