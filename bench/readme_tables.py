"""Markdown tables for the README from bench/results/*.json (written by bench/run_eval.sh)."""

import json
import sys
from pathlib import Path

RESULTS = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")


def ci(e):
    return f"{e['attack']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"


def diff(d):
    return f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def tag_table(k: int = 10) -> str:
    lines = ["| victim | N | cosine (test) | exact F1 | most-frequent | nearest image | Δ vs most-frequent | "
             "neigh. F1 | most-frequent | nearest image | Δ vs most-frequent |", "|" + "---|" * 11]
    for victim in ("lite0", "lite1", "lite2"):
        path = RESULTS / f"eval_{victim}.json"
        if not path.exists():
            continue
        for row in json.loads(path.read_text())["rows"]:
            if row["k"] != k:
                continue
            ex, nb = row["metrics"]["exact_f1"], row["metrics"]["neighbourhood_f1"]
            n = "oracle" if victim == "lite2" else row["n_align"]
            lines.append(f"| {victim} | {n} | {row['alignment_cosine']['test']:.3f} | {ci(ex)} | {ex['frequent']:.3f} | "
                         f"{ex['nearest']:.3f} | {diff(ex['vs_frequent'])} | {ci(nb)} | {nb['frequent']:.3f} | "
                         f"{nb['nearest']:.3f} | {diff(nb['vs_frequent'])} |")
    return "\n".join(lines)


GRAPH_COLUMNS = {"object_f1": "object F1", "relation_f1": "relation F1 (subject-object pairs)",
                 "relation_type_f1": "relation-type F1 (on, under, next_to, ...)"}


def graph_table(k: int = 10) -> str:
    """Every scene-graph metric the results hold (relation_type_f1 only in results written since it was added)."""
    rows = []
    for victim in ("lite0", "lite1", "lite2"):
        path = RESULTS / f"eval_{victim}.json"
        if path.exists():
            rows += [(victim, row) for row in json.loads(path.read_text())["rows"]
                     if row["k"] == k and "scene_graph" in row]
    if not rows:
        return ""
    metrics = [m for m in GRAPH_COLUMNS if all(m in row["scene_graph"] for _, row in rows)]
    lines = ["| victim | N | " + " | ".join(f"{GRAPH_COLUMNS[m]} | most-frequent | Δ" for m in metrics) + " |",
             "|" + "---|" * (2 + 3 * len(metrics))]
    for victim, row in rows:
        g = row["scene_graph"]
        n = "oracle" if victim == "lite2" else row["n_align"]
        lines.append(f"| {victim} | {n} | " + " | ".join(
            f"{ci(g[m])} | {g[m]['frequent']:.3f} | {diff(g[m]['vs_frequent'])}" for m in metrics) + " |")
    return "\n".join(lines)


def caption_table() -> str:
    lines = ["| writer (mode) | metric | victim lite0, N=300 | oracle (lite2) | random public caption | "
             "caption of the mean embedding | nearest image's caption | tag string | Δ vs random caption | "
             "Δ vs mean-embedding caption | vs oracle's caption |", "|" + "---|" * 11]
    finals = ["| writer | metric | final caption from objects + relations | caption from the tags | random public caption | "
              "caption of the mean embedding |", "|" + "---|" * 6]
    for path in sorted(RESULTS.glob("captions_lite0_*.json")):
        cap = json.loads(path.read_text())["captions"][0]
        for key in ("bleu4", "rougeL", "meteor"):
            v = cap["metrics"][key]
            if "final_caption" in v:
                finals.append(f"| {cap['writer']} | {key} | {v['final_caption']:.3f} | {v['attack']:.3f} | {v['random_caption']:.3f} | "
                              f"{v['mean_embedding_caption']:.3f} |")
            lines.append(f"| {cap['writer']} ({cap['mode']}) | {key} | {ci(v)} | {v['oracle']:.3f} | {v['random_caption']:.3f} | "
                         f"{v['mean_embedding_caption']:.3f} | {v['nearest_caption']:.3f} | {v['tag_string']:.3f} | "
                         f"{diff(v['vs_random_caption'])} | {diff(v['vs_mean_embedding_caption'])} | "
                         f"{v['against_oracle_caption']:.3f} |")
    return "\n".join(lines) + ("\n\n" + "\n".join(finals) if len(finals) > 2 else "")


def shift_table() -> str:
    """lite0 at N = 300, k = 10 on other test photos: the same attacker and public pool."""
    lines = ["| test photos | images | exact tag F1 | most-frequent | Δ | neigh. F1 | most-frequent | Δ | caption ROUGE-L (MBR) "
             "| mean-embedding caption | Δ |", "|" + "---|" * 11]
    sets = (("eval_lite0.json", "Flickr8k test, 224 px (the main table)"), ("shift_fullsize_lite0.json",
            "Flickr8k test, full size (~500 px): resolution"), ("shift_coco_lite0.json", "COCO val2017: domain"))
    for name, label in sets:
        path = RESULTS / name
        if not path.exists():
            continue
        d = json.loads(path.read_text())
        row = next(r for r in d["rows"] if r["n_align"] == 300 and r["k"] == 10)
        ex, nb = row["metrics"]["exact_f1"], row["metrics"]["neighbourhood_f1"]
        cap = "| | |"
        if d.get("captions"):
            v = d["captions"][0]["metrics"]["rougeL"]
            cap = f"{ci(v)} | {v['mean_embedding_caption']:.3f} | {diff(v['vs_mean_embedding_caption'])} |"
        elif name == "eval_lite0.json" and (RESULTS / "captions_lite0_mbr.json").exists():
            v = json.loads((RESULTS / "captions_lite0_mbr.json").read_text())["captions"][0]["metrics"]["rougeL"]
            cap = f"{ci(v)} | {v['mean_embedding_caption']:.3f} | {diff(v['vs_mean_embedding_caption'])} |"
        lines.append(f"| {label} | {d['n_images']} | {ci(ex)} | {ex['frequent']:.3f} | {diff(ex['vs_frequent'])} | "
                     f"{ci(nb)} | {nb['frequent']:.3f} | {diff(nb['vs_frequent'])} | {cap}")
    return "\n".join(lines)


def tuning_table() -> str:
    """bench/tune_on_dev.py: every variant's dev scores (lite0 at N = 300 and the oracle, k = 10)."""
    path = RESULTS / "tune_on_dev.json"
    if not path.exists():
        return ""
    lines = ["| variant | vocabulary | lite0 N=300 exact F1 | neigh. F1 | + neighbour votes: exact | neigh. | "
             "oracle exact F1 | + votes | run s (training + dev scoring) |", "|" + "---|" * 9]
    for name, r in json.loads(path.read_text()).items():
        v, o = r["lite0_n300"], r["oracle"]
        lines.append(f"| {name} | {r['vocab']:,} | {v['exact_f1']:.4f} | {v['neighbourhood_f1']:.4f} | "
                     f"{v['fused']['exact_f1']:.4f} | {v['fused']['neighbourhood_f1']:.4f} | {o['exact_f1']:.4f} | "
                     f"{o['fused']['exact_f1']:.4f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def caption_tuning_table() -> str:
    path = RESULTS / "tune_captions.json"
    if not path.exists():
        return ""
    d = json.loads(path.read_text())
    lines = [f"| writer | lite0 N=300 ROUGE-L | Δ vs its mean-embedding caption | oracle ROUGE-L | mean-embedding caption "
             f"(random caption: {d['random_caption_rouge_l']:.3f}) |", "|" + "---|" * 5]
    for name, r in d["writers"].items():
        v, o = r["lite0 N=300"], r["oracle (lite2)"]
        lines.append(f"| {name} | {v['rouge_l']['mean']:.3f} | {diff(v['vs_mean_caption'])} | {o['rouge_l']['mean']:.3f} | "
                     f"{r['mean_caption_rouge_l']:.3f} |")
    return "\n".join(lines)


def training_size_table() -> str:
    path = RESULTS / "training_size.json"
    if not path.exists():
        return ""
    lines = ["| train photos | vocabulary | exact tag F1 | prior | Δ [95% CI] | neigh. tag F1 | prior | Δ [95% CI] | "
             "caption ROUGE-L | mean-embedding caption | Δ [95% CI] |", "|" + "---|" * 11]
    for r in json.loads(path.read_text())["rows"]:
        cells = [f"{r[m]['attack']:.3f} | {r[m]['prior']:.3f} | {r[m]['diff']:+.3f} [{r[m]['diff_ci'][0]:+.3f}, "
                 f"{r[m]['diff_ci'][1]:+.3f}]" for m in ("exact tag F1", "neighbourhood tag F1", "caption ROUGE-L")]
        lines.append(f"| {r['train_images']:,} | {r['vocabulary']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for table in (tag_table(), graph_table(), caption_table(), shift_table(), tuning_table(), caption_tuning_table(),
                  training_size_table()):
        if table:
            print(table, "\n")
