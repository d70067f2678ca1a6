"""Sensitive attributes: what a privacy review asks of a photo ("a child? people? where was it taken?"), scored from
its embedding alone.

The table. `attributes.json` (package data; `--attributes my.json` replaces it) maps each attribute to the words
that show it:

    {"children": {"words": ["child", "children", "kid", "boy", "girl", "baby", "toddler"], "about": "..."}, ...}

"words" is a non-empty list of words or short phrases; "about" is optional text for people. Nothing else is allowed
in an entry (a misspelt key would otherwise be ignored silently). A bad file (not JSON, not an object of such
entries, an attribute without words, or one whose words match no vocabulary tag) is one SlimeError line naming the
file and the entry. The table is checked where it enters (`load_attributes`), against the vocabulary when one is
given, and again by `Attributes.tag_ids` for the vocabulary it is used with.

Matching. Tags and captions are lower-cased and every run of characters other than letters and digits becomes one
space ("T-shirt" -> "t shirt"); a word (or phrase) matches where it appears as whole words: "man" matches
"man ride bike" and "old man", never "woman" or "snowman". Tags are lemmatised ("group of child", "man"), captions
are not ("three children", "two men"), so the default words list plural forms too: those match captions only.
  - an attribute's *tags* are the vocabulary tags that contain one of its words (`Attributes.tag_ids`);
  - its *ground truth* for a photo is whether one of its words appears in any of the photo's captions
    (`attribute_truth`), which is what `experiments/attribute_eval.py` scores the attack against.

The score (`attribute_scores`). Per image and attribute: the highest, over the attribute's tags, of the score
`Attacker.retrieve` ranks tags by — logit_scale * cos(projected image, tag) + alpha * log-count prior — i.e. how
high the attribute's best tag would come in the image's tag list. Max rather than a mean or a sum: an attribute is
present when any of its tags is, and a mean would dilute one strong tag ("little girl") among hundreds of weak
ones; the max's upward drift with the number of tags is a constant per attribute, which a per-attribute ROC AUC
or threshold does not see. Without the nearest public photos' tag votes: they cost an (n x 6,000-photo pool)
similarity and a sparse product per row (several times the heads' cost, at a million rows), and make the score
depend on the public pool as well as on the embedding. Only the attribute tags' columns are computed.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.infra.files import read_bytes

DEFAULT_NAME = "attributes.json"
ENTRY_KEYS = {"words", "about"}
MAX_ATTRIBUTES_BYTES = 16 << 20  # a table of words; anything larger is not one
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lower case, every run of non-letters/digits one space: the form words, tags and captions are matched in."""
    return _NOT_WORD.sub(" ", text.lower()).strip()


@dataclass(frozen=True)
class Attribute:
    name: str
    words: tuple[str, ...]  # normalised
    about: str = ""

    @functools.cached_property
    def pattern(self) -> re.Pattern:
        # Normalised text is words separated by single spaces, so \b marks exactly the whole-word boundaries.
        return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in self.words) + r")\b")

    def matches(self, text: str) -> bool:
        """Whether one of the words appears, as whole words, in `text` (already normalised)."""
        return self.pattern.search(text) is not None


@dataclass(frozen=True)
class Attributes:
    """The checked attribute table, in file order; `source` names its file in every error."""
    items: tuple[Attribute, ...]
    source: str

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def tag_ids(self, vocab: Sequence[str]) -> dict[str, np.ndarray]:
        """attribute -> the indices (int64, ascending) of the vocabulary tags that show it. An attribute that matches
        no tag of `vocab` could never be scored: SlimeError naming the file and the entry."""
        return dict(zip(self.names, _tag_ids(self, tuple(vocab))))


@functools.lru_cache(maxsize=16)
def _tag_ids(attributes: Attributes, vocab: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Cached per (table, vocabulary): scoring a million rows in batches asks for the same columns each batch."""
    tags = [normalise(t) for t in vocab]
    out = []
    for a in attributes.items:
        ids = np.array([i for i, t in enumerate(tags) if a.matches(t)], np.int64)
        if not len(ids):
            raise SlimeError(f"{attributes.source}: attribute {a.name!r}: none of its words matches a tag of the "
                             f"attacker's vocabulary ({len(vocab):,} tags); add words that do (e.g. as in 'man ride "
                             f"bike'), or remove the entry.")
        out.append(ids)
    return tuple(out)


def _entry(source: str, name, value) -> Attribute:
    where = f"{source}: attribute {name!r}"
    if not isinstance(name, str) or not normalise(name):
        raise SlimeError(f"{source}: attribute name {name!r} is empty; name each attribute.")
    if not isinstance(value, dict):
        raise SlimeError(f'{where}: expected an object like {{"words": ["child", "kid"]}}, got '
                         f"{type(value).__name__}.")
    unknown = sorted(set(value) - ENTRY_KEYS)
    if unknown:
        raise SlimeError(f"{where}: unknown key {unknown[0]!r}; an entry has 'words' and optionally 'about'.")
    words = value.get("words")
    if not isinstance(words, list) or not words:
        raise SlimeError(f"{where}: 'words' must be a non-empty list of words, got {json.dumps(words)[:60]}.")
    bad = [w for w in words if not isinstance(w, str) or not normalise(w)]
    if bad:
        raise SlimeError(f"{where}: word {json.dumps(bad[0])[:60]} is not a word (non-empty text with a letter or "
                         f"digit).")
    about = value.get("about", "")
    if not isinstance(about, str):
        raise SlimeError(f"{where}: 'about' must be text, got {type(about).__name__}.")
    return Attribute(name, tuple(dict.fromkeys(normalise(w) for w in words)), about)


def parse_attributes(data: bytes, source: str) -> Attributes:
    """The table in `data` (the bytes of a JSON file called `source`), checked; one SlimeError line otherwise."""
    try:
        table = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise SlimeError(f"{source}: not a JSON attributes table ({' '.join(str(err).split())[:120]}).") from None
    if not isinstance(table, dict) or not table:
        raise SlimeError(f'{source}: expected a non-empty JSON object of attributes, like {{"children": {{"words": '
                         f'["child", "kid"]}}}}, got {"an empty one" if table == {} else type(table).__name__}.')
    items = tuple(_entry(source, name, value) for name, value in table.items())
    return Attributes(items, source)


def load_attributes(path: str | Path | None = None, vocab: Sequence[str] | None = None) -> Attributes:
    """The attribute table at `path` (None: the packaged defaults), checked once here; with `vocab`, every attribute
    must also match one of its tags."""
    if path is None:
        data, source = resources.files("slime_core.stages").joinpath(DEFAULT_NAME).read_bytes(), DEFAULT_NAME
    else:
        data, source = read_bytes(path, "attributes file", MAX_ATTRIBUTES_BYTES), str(path)
    attributes = parse_attributes(data, source)
    if vocab is not None:
        attributes.tag_ids(vocab)
    return attributes


@functools.lru_cache(maxsize=16)
def _columns(attributes: Attributes, vocab: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(every attribute's tag ids laid end to end, each attribute's first position in them). A tag shared by two
    attributes ("little girl": children, people) is scored twice: that costs less than gathering the columns of a
    de-duplicated score matrix (measured: 0.10 s against 0.4 s for 4,096 rows), and np.maximum.reduceat then reads
    contiguous runs."""
    ids = _tag_ids(attributes, vocab)
    return np.concatenate(ids), np.cumsum([0] + [len(i) for i in ids[:-1]])


def attribute_scores(attacker, aligned: np.ndarray, attributes: Attributes,
                     projected: np.ndarray | None = None) -> np.ndarray:
    """(n, len(attributes)) float32: each attack-space embedding's score per attribute (the module docstring says
    which). `attacker` is a pipeline.Attacker (its bundle, tag_vecs, prior, alpha); `aligned` (n, d) or (d,);
    `projected`: `attacker.project(aligned)` where the attack computed it already (a batch attack does).
    Rows that are not finite give NaN scores: callers skip such rows, counting them, rather than score them."""
    b = attacker.bundle
    aligned = np.atleast_2d(np.asarray(aligned, np.float32))
    d = attacker.pool_attack.shape[1]
    if aligned.ndim != 2 or aligned.shape[1] != d:
        raise SlimeError(f"attack-space embeddings of shape {aligned.shape}; the attacker's are {d}-d.")
    if not len(aligned):
        return np.zeros((0, len(attributes)), np.float32)
    cols, starts = _columns(attributes, tuple(b.tags))
    u = attacker.project(aligned) if projected is None else np.atleast_2d(projected)
    # scale * cos + alpha * prior: `with_prior`'s inner product, on the attribute tags' columns only
    scores = u @ (np.float32(b.manifest["logit_scale"]) * attacker.tag_vecs[cols]).T
    scores += np.float32(attacker.alpha) * attacker.prior[cols]
    return np.maximum.reduceat(scores, starts, axis=1).astype(np.float32, copy=False)


def attribute_truth(captions: Sequence[str], attributes: Attributes) -> np.ndarray:
    """(len(attributes),) bool: whether one of each attribute's words appears in any of the photo's captions."""
    texts = [normalise(c) for c in captions]
    return np.array([any(a.matches(t) for t in texts) for a in attributes.items], bool)
