"""The audit behind `slime report`: every measurement the report shows, as one dict.

Sections: threat model; models used; alignment cosine vs N; leakage per k beside the prior baselines;
sensitive attributes (ROC AUC per attribute beside chance and the oracle: `attribute_report.report_section`);
example images with what leaked; defence curves (leakage vs utility, knee marked); the paper's reference
figures (the packaged transcription, or $SLIME_PAPER_FIGURES), drawn apart and labelled as the paper's.
Every other number comes from this run. Images are carried as base64 JPEG thumbnails (a generated low-fidelity
image as a PNG, when a low-fidelity maker is given); `present.html_report`
renders the dict as one self-contained HTML file (plus the same numbers as JSON).

    report = build_report(attacker, samples, grid=AttackSpec("lite0", (30, 300), (5, 10)),
                          defences={"noise": [0, 0.05, 0.1]})
    html_path, json_path = present.html_report.write_report(report, "report.html")
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
from pathlib import Path

import numpy as np

from slime_core.attack_spec import AttackSpec
from slime_core.experiments import defence_curves as _curves
from slime_core.experiments.attribute_report import report_section
from slime_core.experiments.evaluation import GRID
from slime_core.infra import settings
from slime_core.infra.errors import SlimeError
from slime_core.stages import align
from slime_core.stages.defences import defence_spec, list_defences
from slime_core.stages.encoders import encoder_cfg
from slime_core.stages.metrics import Estimate, tag_scores

THREAT_MODEL = [
    ("Owner", "embeds its private images with an image encoder (the victim) and releases or stores the "
              "embeddings: a vector database, an embedding API, a shared feature file."),
    ("Attacker", "obtains victim embeddings but not the images. It owns a different encoder (here a dual "
                 "image-text encoder trained offline) and a public pool of images it can embed itself."),
    ("Leaked pairs", "the attacker also holds N (victim embedding, public image) pairs, e.g. public images the "
                     "owner embedded too, and fits a map from the victim space into its own space on them."),
    ("Goal", "read semantics off the private embeddings: relational tags (\"dog chase ball\"), the nearest "
             "public images, a caption."),
    ("Measured", "on held-out test images never seen by the attacker: tag F1 (exact and near-synonym) against "
                 "the tags of the images' own captions, beside the prior baseline (the k most frequent tags, "
                 "which needs no embedding at all): only what beats the prior has leaked."),
    ("Defended", "the owner transforms every embedding before release; the attacker adapts by refitting its map "
                 "on defended pairs. Utility = the embedding's own job, image-to-image retrieval."),
]


def thumbnail_uri(path, size: int = 144) -> str | None:
    """A base64 JPEG data URI of an image file (a path or a file object), or None when absent/unreadable."""
    from PIL import Image

    try:
        if isinstance(path, (str, Path)):  # regular files only, capped (a symlink to /dev/zero never ends)
            from slime_core.infra.files import MAX_IMAGE_BYTES, read_bytes

            path = io.BytesIO(read_bytes(path, "image file", MAX_IMAGE_BYTES))
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=72)
    except (OSError, ValueError):  # SlimeError is a ValueError
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_uri(image) -> str:
    """A base64 PNG data URI of a PIL image, at its own size: a generated low-fidelity image, lossless."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _ci(values, n_boot, seed) -> dict:
    return Estimate.bootstrap(values, n_boot, seed).to_dict()


def attack_grid(setup: "_curves.Setup", n_aligns, ks) -> dict:
    """Undefended attack: alignment cosine per N and tag F1 per (N, k), beside the frequent-tag prior."""
    attacker, n_boot, seed = setup.attacker, setup.n_boot, setup.spec.seed
    pool = attacker.pool_attack
    kmax = max(ks)
    rows, by_n = [], []
    freq = {k: tag_scores([attacker.frequent_tags(k)] * len(setup.refs), setup.refs, setup.scorer) for k in ks}
    for n in n_aligns:
        idx = align.choose_pairs(len(pool), n, seed)
        fit = align.fit_alignment(setup.X_pool[idx], pool[idx], setup.spec.method)
        batch = attacker.attack_batch(fit, setup.X_test, kmax, A_true=setup.A_test)
        by_n.append({"n_align": n, "heldout_cosine": fit.heldout_cosine,
                     "test_cosine": _ci(batch.cosines, n_boot, seed)})
        for k in ks:
            sc = tag_scores(batch.top(k), setup.refs, setup.scorer)
            rows.append({"n_align": n, "k": k,
                         "exact_f1": _ci(sc["exact_f1"], n_boot, seed),
                         "neighbourhood_f1": _ci(sc["neighbourhood_f1"], n_boot, seed),
                         "frequent": {"exact_f1": float(freq[k]["exact_f1"].mean()),
                                      "neighbourhood_f1": float(freq[k]["neighbourhood_f1"].mean())}})
    return {"alignment_vs_n": by_n, "leakage": rows}


def examples(setup: "_curves.Setup", samples, n: int = 6, seed: int = 0, thumbs: bool = True,
             lowfi=None) -> list[dict]:
    """A few test images with the tags the undefended attack read off their embeddings, each marked
    exact (in the image's own caption tags), near (a near-synonym of one) or miss. With a low-fidelity maker
    (`lowfi.make_lowfi`), each also gets the image generated from its aligned embedding ("generated", a PNG data
    URI, with thumbs) and the objects named by its tags, seen in that image and in its nearest public photo."""
    attacker = setup.attacker
    samples = [s for s in samples if s.path is not None]
    pick = np.sort(np.random.default_rng(seed).choice(len(samples), size=min(n, len(samples)), replace=False))
    if not len(pick):  # --examples 0: nothing to attack (an empty batch is refused)
        return []
    idx = setup.idx
    fit = align.fit_alignment(setup.X_pool[idx], attacker.pool_attack[idx], setup.spec.method)
    aligned = fit.transform(setup.X_test[pick])
    tags = attacker.retrieve(aligned, setup.spec.top_k)
    near = attacker.neighbours(aligned, 3)
    generated = lowfi.generate(aligned) if lowfi is not None else [None] * len(pick)
    out = []
    for j, i in enumerate(pick):
        s, refs = samples[i], setup.refs[i]
        covered = set().union(*setup.scorer.neighbours(refs)) if refs else set()
        marked = [{"tag": t, "score": round(sc, 3), "match": "exact" if t in refs else "near" if t in covered else "miss"}
                  for t, sc in tags[j]]
        item = {"image": s.name, "caption": s.captions[0] if s.captions else "", "tags": marked,
                "frequent_tags": attacker.frequent_tags(setup.spec.top_k),
                "neighbours": [{"image": name, "score": round(sc, 3)} for name, sc in near[j]]}
        if lowfi is not None:
            item["lowfi_method"] = lowfi.name
            item["objects"] = attacker.objects_of([t for t, _ in tags[j]], generated[j], near[j][0][0] if near[j] else None)
        if thumbs:
            item["thumbnail"] = thumbnail_uri(s.path)
            for nb in item["neighbours"]:
                nb["thumbnail"] = thumbnail_uri(Path(attacker.data) / "images" / nb["image"], 96)
            if generated[j] is not None:
                item["generated"] = png_uri(generated[j])
        out.append(item)
    return out


PAPER_FIGURES_ENV = "SLIME_PAPER_FIGURES"


def paper_figures_path() -> Path:
    """The paper's figures the About page and every report show: the file named by $SLIME_PAPER_FIGURES, else
    the transcription packaged with slime_core (paper_figures.json)."""
    return settings.paper_figures()


def load_paper_figures(path) -> dict:
    """A JSON file of the paper's figures, transcribed by hand (`path` may also be an upload's bytes):
    {"source" (the paper, and whose numbers on what data), "units",
     "figures": [{"title", "x_label", "y_label", "series": [{"name", "x", "y"}], "note"}],
     "tables": [{"title", "columns", "rows", "metrics" (the numeric columns, percentages), "note"}],
     "models" (one table), "text_figures": [statement], "relation_predicates": [name]}.
    Every part but "figures" or "tables" is optional; slime_core/paper_figures.json is the full shape."""
    name = "(uploaded file)" if isinstance(path, bytes) else path
    try:
        data = json.loads(path if isinstance(path, bytes) else Path(path).read_text())
        if not isinstance(data, dict) or not ("figures" in data or "tables" in data):
            raise ValueError("neither 'figures' nor 'tables'")
        for f in data.get("figures", []):
            for s in f["series"]:
                if len(s["x"]) != len(s["y"]):
                    raise ValueError(f"series {s.get('name')!r}: x and y differ in length")
        for t in data.get("tables", []) + ([data["models"]] if "models" in data else []):
            _check_table(t)
        for key in ("text_figures", "relation_predicates"):
            if not all(isinstance(x, str) for x in data.get(key, [])):
                raise ValueError(f"{key!r} is not a list of strings")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise SlimeError(f"paper figures {name}: not a valid figures file ({err}).") from None
    return data


def _check_table(t: dict) -> None:
    columns, metrics = t["columns"], t.get("metrics", [])
    if not set(metrics) <= set(columns):
        raise ValueError(f"table {t['title']!r}: metrics {metrics} not all among its columns")
    for row in t["rows"]:
        if len(row) != len(columns):
            raise ValueError(f"table {t['title']!r}: row {row!r} has {len(row)} cells for {len(columns)} columns")
        for col, v in zip(columns, row):
            if col in metrics and not (isinstance(v, (int, float)) and 0 <= v <= 100):
                raise ValueError(f"table {t['title']!r}: {col} = {v!r} is not a percentage")


def build_report(attacker, samples, *, grid: AttackSpec = GRID, n_align: int = 300, k: int = 10,
                 defences: dict | None = None, n_examples: int = 6, n_boot: int = 1000, paper_figures=None,
                 data_label: str | None = None, setup=None, progress: bool = False, lowfi=None,
                 attributes=None) -> dict:
    """Run everything the report shows and return it as one dict (`write_report` renders it): the attack over
    `grid` (victim, N x k, method, seed), and the defence curves and examples at one point (n_align, k).
    `defences`: name -> strengths; None = every defence at its default strengths; {} = no curves.
    `paper_figures`: a figures file or an upload's bytes; None = `paper_figures_path()`.
    `lowfi`: a low-fidelity image maker; each example then shows its generated image beside the original.
    `attributes`: the sensitive-attribute table (`stages.attributes.load_attributes`; None: the packaged one)."""
    samples = [s for s in samples if s.path is not None]
    if defences is None:
        defences = {name: list(defence_spec(name).default_strengths) for name in list_defences()}
    specs = {name: defence_spec(name) for name in defences}
    grid.within(attacker)
    point = AttackSpec(grid.victim, n_align, k, grid.method, grid.seed).within(attacker)
    victim, method, seed, n_aligns, ks = grid.victim, grid.method, grid.seed, grid.n_align, grid.k
    pool_size = len(attacker.pool_attack)
    if setup is None:
        setup = _curves.prepare(attacker, samples, point, n_boot=n_boot, progress=progress)
    attack = attack_grid(setup, list(n_aligns), list(ks))
    curves = _curves.all_curves(setup, defences, progress) if defences else {}
    b = attacker.bundle
    def about(name):
        try:
            return encoder_cfg(name).as_dict()  # the registry entry as JSON, as the report stores it
        except SlimeError:
            return {"about": "an encoder outside the registry (pool embeddings supplied by the user)"}

    report = {
        "title": f"SLImE audit: semantic leakage from {victim} image embeddings",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threat_model": [{"role": r, "text": t} for r, t in THREAT_MODEL],
        "models": {
            "victim": {"name": victim, **about(victim)},
            "attacker": {"name": b.attacker, "image_encoder": {"name": b.image_encoder, **about(b.image_encoder)},
                         "text_encoder": b.manifest.get("text_encoder"), "dims": b.manifest.get("dims"),
                         "training_data": b.manifest.get("training_data"), "vocabulary": len(b.tags),
                         "public_pool": pool_size},
            "alignment": {"method": method, "seed": seed, "n_align": n_align},
        },
        "data": {"folder": data_label or str(attacker.data), "test_images": len(samples)},
        "settings": {"n_aligns": list(n_aligns), "ks": list(ks), "n_align": n_align, "k": k, "bootstrap": n_boot},
        "attack": attack,
        "sensitive_attributes": report_section(setup, samples, sorted({*n_aligns, n_align}), attributes),
        "examples": examples(setup, samples, n_examples, seed, lowfi=lowfi),
        "defences": {name: {"spec": {"strength": specs[name].strength, "protects": specs[name].protects,
                                     "does_not_protect": specs[name].does_not}, "rows": rows}
                     for name, rows in curves.items()},
        "undefended": setup.undefended,
        "paper_figures": load_paper_figures(paper_figures or paper_figures_path()),
    }
    return report
