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


def graph_table(k: int = 10) -> str:
    lines = ["| victim | N | object F1 | most-frequent | Δ | relation F1 (subject-object pairs) | most-frequent | Δ |",
             "|" + "---|" * 8]
    for victim in ("lite0", "lite1", "lite2"):
        path = RESULTS / f"eval_{victim}.json"
        if not path.exists():
            continue
        for row in json.loads(path.read_text())["rows"]:
            if row["k"] != k or "scene_graph" not in row:
                continue
            g = row["scene_graph"]
            n = "oracle" if victim == "lite2" else row["n_align"]
            lines.append(f"| {victim} | {n} | " + " | ".join(
                f"{ci(g[m])} | {g[m]['frequent']:.3f} | {diff(g[m]['vs_frequent'])}" for m in ("object_f1", "relation_f1")) + " |")
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


if __name__ == "__main__":
    print(tag_table(), "\n")
    print(graph_table(), "\n")
    print(caption_table())
