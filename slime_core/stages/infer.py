"""Adaptive inference stages: objects, relations and scene from whatever earlier stages produced.

Each stage may condition on a low-fidelity image, retrieved tags, a generated caption and the outputs
of earlier stages, alone or combined (the paper's ablation). Two paths:
  offline  `graph_from_tags` turns relational tags into a scene graph with no model at all;
  VLM      `VLMInferrer` asks a vision-language model through litellm for JSON checked by pydantic.
Relations use the paper's predicate set `PREDICATES`; scores are P/R/F1 on lemmatised strings.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Literal, Sequence, get_args

from pydantic import BaseModel, ValidationError, field_validator

from slime_core.infra import remote, settings
from slime_core.infra.errors import MissingModelError, SlimeError, mask_secrets
from slime_core.stages import caption_metrics

Predicate = Literal["on", "over", "under", "inside", "covering", "hanging_over", "enclosing", "next_to", "part_of"]
PREDICATES: tuple[str, ...] = get_args(Predicate)
Triple = tuple[str, str, str]
log = logging.getLogger(__name__)


@dataclass
class SceneGraph:
    objects: list[str] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    relations: list[Triple] = field(default_factory=list)  # predicates from PREDICATES only
    scene: str | None = None
    # The tags' own verb phrases ("dog", "chase", "ball"): most have no counterpart in PREDICATES.
    raw_relations: list[Triple] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SceneGraph":
        d = json.loads(text)
        return cls(
            objects=list(d.get("objects", [])),
            attributes={k: list(v) for k, v in d.get("attributes", {}).items()},
            relations=[tuple(r) for r in d.get("relations", [])],
            scene=d.get("scene"),
            raw_relations=[tuple(r) for r in d.get("raw_relations", [])],
        )


# ---------------------------------------------------------------- offline: tags -> graph

PREPOSITIONS = {
    "on", "onto", "upon", "atop", "in", "into", "inside", "within", "under", "below", "beneath", "underneath",
    "over", "above", "beside", "near", "next", "by", "alongside", "behind", "at", "of", "with", "across",
    "along", "around", "through", "from", "to", "toward", "towards", "against", "between", "among", "outside",
}
PREP_TO_PREDICATE = {
    **dict.fromkeys(["on", "onto", "upon", "atop", "on top of"], "on"),
    **dict.fromkeys(["in", "into", "inside", "within"], "inside"),
    **dict.fromkeys(["under", "below", "beneath", "underneath"], "under"),
    **dict.fromkeys(["over", "above"], "over"),
    **dict.fromkeys(["beside", "near", "next to", "by", "alongside"], "next_to"),
    **dict.fromkeys(["of", "part of"], "part_of"),
}
VERB_TO_PREDICATE = {"cover": "covering", "enclose": "enclosing", "surround": "enclosing", "fence": "enclosing"}


def parse_tag(tag: str) -> tuple[str, ...]:
    """("modifier", "noun") for two words; (subject, verb or "", preposition or "", object) for three or more.

    One word gives (noun,). Subjects and objects are assumed to be single words, as the tags module makes them.
    """
    words = tag.lower().split()
    if len(words) <= 2:
        return tuple(words)
    subject, middle, obj = words[0], words[1:-1], words[-1]
    if middle[0] in PREPOSITIONS:  # noun-prep-noun, "man in shirt"
        return subject, "", " ".join(middle), obj
    return subject, middle[0], " ".join(middle[1:]), obj


def map_predicate(verb: str, prep: str) -> str | None:
    """The paper's predicate for a verb and/or preposition, or None when none fits."""
    verb, prep = lemma(verb, "v"), prep.lower().strip()
    if verb == "hang" and prep in {"over", "above", ""}:
        return "hanging_over"
    if prep in PREP_TO_PREDICATE:
        return PREP_TO_PREDICATE[prep]
    return VERB_TO_PREDICATE.get(verb) if not prep else None


def graph_from_tags(tags: Iterable[str], scene_writer: Callable[[list[str]], str | None] | None = None) -> SceneGraph:
    """Scene graph from relational tags. `scene_writer(tags) -> label` names the scene (e.g. a local LLM)."""
    tags = [t for t in tags if t.strip()]
    g = SceneGraph()

    def node(name: str) -> None:
        if name not in g.objects:
            g.objects.append(name)

    for tag in tags:
        parts = parse_tag(tag)
        if len(parts) == 1:
            node(parts[0])
        elif len(parts) == 2:
            modifier, noun = parts
            node(noun)
            if modifier not in g.attributes.setdefault(noun, []):
                g.attributes[noun].append(modifier)
        else:
            subject, verb, prep, obj = parts
            node(subject), node(obj)
            raw = (subject, " ".join(w for w in (verb, prep) if w), obj)
            if raw not in g.raw_relations:
                g.raw_relations.append(raw)
            pred = map_predicate(verb, prep)
            if pred and (subject, pred, obj) not in g.relations:
                g.relations.append((subject, pred, obj))
    g.scene = scene_writer(tags) if scene_writer and tags else None
    return g


# ---------------------------------------------------------------- VLM path

class ObjectsOut(BaseModel):
    objects: list[str]
    attributes: dict[str, list[str]] = {}


class RelationOut(BaseModel):
    subject: str
    predicate: Predicate
    object: str

    @field_validator("predicate", mode="before")
    @classmethod
    def _spelling(cls, v):  # "next to" / "Next-To" are the same predicate; "holding" still fails
        return re.sub(r"[\s\-]+", "_", v.strip().lower()) if isinstance(v, str) else v


class RelationsOut(BaseModel):
    relations: list[RelationOut]


class SceneOut(BaseModel):
    scene: str


SYSTEM = "You analyse what a photo shows. Answer with one JSON object only, no prose, no code fences."
ASK_OBJECTS = (
    'List the physical objects in the photo as singular lower-case nouns, with their visible attributes (colour, '
    'material, size). JSON: {"objects": ["dog", ...], "attributes": {"dog": ["black"], ...}}'
)
ASK_RELATIONS = (
    "List spatial relations between objects in the photo. Use only these predicates: "
    + ", ".join(PREDICATES)
    + '. JSON: {"relations": [{"subject": "dog", "predicate": "on", "object": "sofa"}, ...]}'
)
ASK_SCENE = 'Name the scene or place in a few words (e.g. "kitchen", "beach", "city street"). JSON: {"scene": "..."}'


def _image_part(image) -> dict:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def _evidence(tags, caption, objects, relations) -> str:
    lines = []
    if tags:
        lines.append("Tags retrieved for the photo (may be noisy): " + "; ".join(tags))
    if caption:
        lines.append("A caption generated for the photo (may be wrong): " + caption)
    if objects:
        lines.append("Objects found so far: " + ", ".join(objects))
    if relations:
        lines.append("Relations found so far: " + "; ".join(" ".join(r) for r in relations))
    return "\n".join(lines)


def _strip_fences(text: str) -> str:
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    return (m.group(1) if m else text).strip()


class VLMInferrer:
    """Objects, relations and scene from a vision-language model via litellm; keys come from the environment."""

    def __init__(self, model: str, api_base: str | None = None, timeout: float | None = None, retries: int = 2,
                 temperature: float = 0.0, completion_kwargs: dict | None = None):
        self.model, self.api_base, self.timeout, self.retries = model, api_base, timeout, retries
        self.temperature, self.completion_kwargs = temperature, dict(completion_kwargs or {})

    def _litellm(self):
        settings.quiet_litellm()
        try:
            import litellm
        except ImportError as e:
            raise MissingModelError("The VLM path needs litellm: pip install litellm") from e
        env = litellm.validate_environment(self.model, api_base=self.api_base)
        if not env.get("keys_in_environment", False):
            missing = ", ".join(env.get("missing_keys", [])) or "an API key"
            raise MissingModelError(f"VLM {self.model!r} needs {missing} set in the environment (or an api_base).")
        return litellm

    def _ask(self, schema: type[BaseModel], question: str, image=None, **evidence) -> BaseModel:
        if image is None and not any(evidence.values()):
            raise SlimeError("Inference needs at least one of: image, tags, caption or earlier-stage outputs.")
        litellm = self._litellm()
        import openai  # litellm's errors subclass openai's

        text = "\n\n".join(x for x in (_evidence(**evidence), question) if x)
        content = ([_image_part(image)] if image is not None else []) + [{"type": "text", "text": text}]
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
        def send(timeout: float):
            try:
                return litellm.completion(model=self.model, messages=messages, api_base=self.api_base,
                                          timeout=timeout, temperature=self.temperature, num_retries=0,
                                          max_retries=0, **self.completion_kwargs)
            except openai.OpenAIError as e:
                problem = f"{type(e).__name__}: {mask_secrets(str(e))[:300]}"
                if isinstance(e, (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                                  openai.InternalServerError)) or (getattr(e, "status_code", None) or 0) >= 500:
                    raise remote.Transient(problem) from None
                raise SlimeError(f"VLM {self.model!r} call failed: {problem}") from None

        error = ""
        for _ in range(self.retries + 1):
            resp = remote.call(send, f"VLM {self.model!r}", timeout=self.timeout,
                               give_up=lambda n, problem: f"VLM {self.model!r} call failed after {n} tries: {problem}")
            reply = resp.choices[0].message.content or ""
            try:
                return schema.model_validate_json(_strip_fences(reply))
            except ValidationError as e:
                error = str(e)
            # Feed the error back: models usually fix their JSON when told what was wrong.
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": f"That was not valid. Errors:\n{error}\nAnswer again with JSON only."}]
        raise SlimeError(f"VLM {self.model!r} gave no valid {schema.__name__} after {self.retries + 1} tries: {error}")

    def objects(self, image=None, tags=None, caption=None) -> ObjectsOut:
        return self._ask(ObjectsOut, ASK_OBJECTS, image, tags=tags, caption=caption, objects=None, relations=None)

    def relations(self, image=None, tags=None, caption=None, objects=None) -> list[Triple]:
        out = self._ask(RelationsOut, ASK_RELATIONS, image, tags=tags, caption=caption, objects=objects, relations=None)
        return [(r.subject.lower(), r.predicate, r.object.lower()) for r in out.relations]

    def scene(self, image=None, tags=None, caption=None, objects=None, relations=None) -> str:
        out = self._ask(SceneOut, ASK_SCENE, image, tags=tags, caption=caption, objects=objects, relations=relations)
        return out.scene.strip().lower()

    def scene_graph(self, image=None, tags=None, caption=None, objects=None, relations=None) -> SceneGraph:
        """Run the stages in order, each conditioned on the ones before; given outputs are not re-inferred."""
        attributes: dict[str, list[str]] = {}
        if objects is None:
            found = self.objects(image, tags, caption)
            objects, attributes = [o.lower() for o in found.objects], found.attributes
        if relations is None:
            relations = self.relations(image, tags, caption, objects)
        scene = self.scene(image, tags, caption, objects, relations)
        return SceneGraph(list(objects), attributes, [tuple(r) for r in relations], scene)


# ---------------------------------------------------------------- scores

IRREGULAR = {"people": "person", "persons": "person"}  # WordNet keeps "people" as its own noun


_WORDNET_WARNED: list = []
_WORDNET: list = []  # the loaded corpus, once found (a miss is not remembered: setup may come later)


def _wordnet():
    """nltk's WordNet (installed by `python -m slime_core.stages.caption_metrics --setup`), or None when absent."""
    if _WORDNET:
        return _WORDNET[0]
    try:
        _WORDNET.append(caption_metrics.wordnet())
    except (SlimeError, LookupError, OSError) as err:
        if _WORDNET_WARNED:
            return None
        _WORDNET_WARNED.append(True)
        log.warning("WordNet is not available (%s); scene-graph nouns are lemmatised by suffix rules only", err)
        return None
    return _WORDNET[0]


def lemma(word: str, pos: str = "n") -> str:
    """Lower-case WordNet lemma (pos "n" noun, "v" verb): buses -> bus, wolves -> wolf, species -> species,
    news -> news, men -> man, glasses -> glass. Where WordNet offers several (glasses: glasses, glass) the
    one with the most senses of exactly that form wins, the word itself on a tie. Words WordNet does not know
    stay as they are. Without WordNet (not set up), a few suffix rules stand in."""
    w = word.lower().strip()
    if not w:
        return w
    if pos == "n" and w in IRREGULAR:
        return IRREGULAR[w]
    wn = _wordnet()
    return _suffix_lemma(w) if wn is None else _wordnet_lemma(w, pos)


@functools.lru_cache(maxsize=65536)
def _wordnet_lemma(w: str, pos: str) -> str:
    wn = _WORDNET[0]
    candidates = wn._morphy(w, pos)  # every base form WordNet accepts, the word itself first when it is one
    if not candidates:
        return w
    senses = {c: len(wn.lemmas(c, pos)) for c in candidates}  # senses of exactly this form
    return max(candidates, key=lambda c: (senses[c], c == w))


def _suffix_lemma(w: str) -> str:
    """Fallback without WordNet only: a few English plural rules."""
    irregular = {"men": "man", "women": "woman", "children": "child", "feet": "foot", "teeth": "tooth",
                 "mice": "mouse", "geese": "goose", "knives": "knife", "leaves": "leaf", "wolves": "wolf"}
    if w in irregular:
        return irregular[w]
    if w.endswith(("species", "news", "series")):
        return w
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes", "zes", "uses")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def norm(text: str) -> str:
    return " ".join(lemma(w) for w in re.split(r"[\s_\-]+", text) if w)


def _prf(hits: int, n_pred: int, n_ref: int) -> dict:
    p = hits / n_pred if n_pred else 0.0
    r = hits / n_ref if n_ref else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _multiset_prf(pred: Counter, ref: Counter) -> dict:
    return _prf(sum((pred & ref).values()), sum(pred.values()), sum(ref.values()))


def object_f1(pred: Iterable[str], ref: Iterable[str]) -> dict:
    """P/R/F1 over the sets of normalised object names."""
    p, r = {norm(o) for o in pred}, {norm(o) for o in ref}
    return _prf(len(p & r), len(p), len(r))


def relation_f1(pred: Iterable[Sequence[str]], ref: Iterable[Sequence[str]]) -> dict:
    """{"triple", "pair", "predicate"} -> P/R/F1. Triples are deduplicated; pairs (ordered subject, object)
    and predicate types are then counted as multisets, so two "on" relations need two matches."""
    p = {(norm(s), norm(x), norm(o)) for s, x, o in pred}
    r = {(norm(s), norm(x), norm(o)) for s, x, o in ref}
    return {
        "triple": _prf(len(p & r), len(p), len(r)),
        "pair": _multiset_prf(Counter((s, o) for s, _, o in p), Counter((s, o) for s, _, o in r)),
        "predicate": _multiset_prf(Counter(x for _, x, _ in p), Counter(x for _, x, _ in r)),
    }


def scene_f1(pred: str | None, ref: str | None, exact: bool = False) -> dict:
    """Token-level P/R/F1 between two scene labels (exact=True: 1 or 0 for the whole label)."""
    p, r = norm(pred or ""), norm(ref or "")
    if exact:
        hit = int(bool(p) and p == r)
        return _prf(hit, int(bool(p)), int(bool(r)))
    return _multiset_prf(Counter(p.split()), Counter(r.split()))
