"""The attack, end to end: victim embedding -> aligned into attack space -> top-k tags -> neighbours -> caption
(-> a low-fidelity image and the objects named or seen, when a low-fidelity maker is given).

`Attacker` holds one trained bundle. Alignment maps are fitted once per (victim, N, method, seed) on N pairs
drawn from the bundle's public pool and cached, so a demo slider that moves N does no work twice.

    attacker = Attacker()  # the default bundle, models/default
    result = attacker.attack("photo.jpg", spec=AttackSpec("lite0", n_align=300, k=10))
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from slime_core.attack_result import AttackResult, BatchAttack
from slime_core.attack_spec import AttackSpec
from slime_core.infra import loaded_models, settings
from slime_core.infra.errors import SlimeError
from slime_core.stages import align, lowfi, retrieve
from slime_core.stages.bundle import Bundle, load_bundle
from slime_core.stages.data import load_folder
from slime_core.stages.encoders import EmbeddingCache, encoder_cfg, fingerprint, get_encoder, weights_identity
from slime_core.stages.infer import graph_from_tags
from slime_core.stages.metrics import NeighbourhoodScorer
from slime_core.stages.rank import rerank
from slime_core.stages.uploads import check_degenerate, order_pool_upload
from slime_core.stages.write import check_final_parts, final_prompt_from

log = logging.getLogger(__name__)

MAX_ALIGNMENTS = 32  # fitted maps kept per attacker, least recently used dropped first
DEMO_DATA = settings.DEMO_DATA
default_data = settings.data_dir


def check_held_out(attacker, samples) -> None:
    """Leakage is measured on images the attacker never saw, each once: none may be in its public pool, and no
    image name may appear twice (it would be counted twice in every mean and interval)."""
    dup = next((name for name, count in Counter(s.name for s in samples).items() if count > 1), None)
    if dup is not None:
        raise SlimeError(f"image '{dup}' appears more than once in the samples; each image is measured once (merge its "
                         f"captions into one record).")
    if set(attacker.bundle.pool["images"]) & {s.name for s in samples}:
        raise SlimeError("some evaluation images are in the attacker's public pool; use a held-out split (test).")


INIT_PHOTOS = 4  # nearest public photos whose mean latent starts the offline generator's inversion


class Attacker:
    def __init__(self, bundle: Bundle | str | Path | None = None, data: str | Path | None = None, cache: Path | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.data = Path(data) if data else default_data()
        self.cache = EmbeddingCache(cache or settings.embeddings_cache())
        b = self.bundle
        self.tag_vecs = retrieve.project_tags(b.heads, b.tag_text)
        self.prior = retrieve.log_prior(b.tag_counts)
        self.alpha = float(b.manifest["prior_alpha"])
        self.index = retrieve.TagIndex(retrieve.prior_keys(self.tag_vecs, self.prior))
        self.pool_attack = b.pool_embeddings[b.image_encoder]
        self._pool_attack_T = None
        self.votes = retrieve.NeighbourVotes(**b.manifest.get("neighbour_votes", {}))
        self._pool_tags = None
        self._alignments = align.FitCache(MAX_ALIGNMENTS)  # (victim, N, method, seed) -> map
        self._extra_pools: dict[str, np.ndarray] = {}
        self._captions: dict[str, list[str]] | None = None
        self._scorer: NeighbourhoodScorer | None = None
        self._pool_objects: dict[str, list[str]] | None = None

    # --- encoders and the public pool -------------------------------------------------------------
    def scorer(self) -> NeighbourhoodScorer:
        """Neighbourhood tag scores over the bundle's vocabulary (m=5), in its text encoder's space; one per attacker,
        so reference tags are embedded once."""
        if self._scorer is None:
            text = self.encoder(self.bundle.manifest["text_encoder"])
            self._scorer = NeighbourhoodScorer(self.bundle.tags, self.bundle.tag_text, text.encode_texts, m=5)
        return self._scorer

    def encoder(self, name: str):
        """The encoder called `name`; its weights are loaded once per process (slime_core.infra.loaded_models)."""
        return get_encoder(name)

    def embed(self, victim: str, images: list, progress: bool = False) -> np.ndarray:
        """Victim embeddings of image paths or PIL images, cached on disk by content."""
        return self.cache.encode_images(self.encoder(victim), images, progress=progress)

    def pool_paths(self) -> list[Path]:
        return [self.data / "images" / name for name in self.bundle.pool["images"]]

    def nearest_photos(self, attack_embeddings: np.ndarray, k: int = INIT_PHOTOS) -> list[list[Path]]:
        """Per row, the paths of its k nearest public photos (on disk or not): the offline generator's start."""
        return [[self.data / "images" / n for n, _ in row] for row in self.neighbours(attack_embeddings, k)]

    def add_victim_pool(self, victim: str, embeddings: np.ndarray, names: list[str] | None = None,
                        what: str | None = None) -> None:
        """The victim's pool embeddings from outside the bundle (e.g. a team's own embedding service), one row per
        pool image: matched by `names` (a file's `image` column) when given, else in `bundle.pool["images"]` order.
        They replace the bundle's own pool for `victim`, if it has one. Checked: finite, sanely scaled rows that
        differ from each other (a pool of identical rows carries no information and is refused)."""
        what = what or f"{victim} pool embeddings"
        embeddings = align.check_embeddings(embeddings, what)
        if len(embeddings) != len(self.pool_attack):
            raise SlimeError(f"{what}: {len(embeddings)} rows; the pool has {len(self.pool_attack)} images "
                             f"(list them with `slime pool`).")
        try:
            embeddings = order_pool_upload(embeddings, names, self.bundle.pool["images"])
            check_degenerate(embeddings, what)
        except SlimeError as err:
            raise SlimeError(str(err) if what in str(err) else f"{what}: {err}") from None
        self._extra_pools[victim] = embeddings
        self._alignments.drop(lambda key: key[0] == victim)

    def victim_rows(self, victim: str, idx: np.ndarray, progress: bool = False) -> np.ndarray:
        """The victim's embeddings of the pool images `idx`. An encoder the bundle lacks embeds only these
        N images (an API victim is paid for N calls, not the whole pool), cached on disk."""
        if victim in self._extra_pools:  # given by the user: wins over the bundle's own
            return self._extra_pools[victim][idx]
        if victim in self.bundle.pool_embeddings:
            return self.bundle.pool_embeddings[victim][idx]
        encoder_cfg(victim)  # unknown names fail here with the list of known ones
        paths = [self.pool_paths()[i] for i in idx]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise SlimeError(f"the bundle has no pool embeddings for '{victim}', and the pool images are not in "
                             f"{self.data / 'images'} to embed them (e.g. {missing[0].name}); point --pool-data at the "
                             f"dataset the bundle was built from.")
        return self.embed(victim, [str(p) for p in paths], progress=progress)

    def victim_pool(self, victim: str, progress: bool = False) -> np.ndarray:
        """The victim's embeddings of the whole pool (defence curves and the explorer need them all)."""
        return self.victim_rows(victim, np.arange(len(self.pool_attack)), progress)

    # --- stages ------------------------------------------------------------------------------------
    def alignment(self, victim: str, n_align: int, method: str = "ridge", seed: int = 0) -> align.Alignment:
        """The map fitted on N pool pairs; the last MAX_ALIGNMENTS maps are kept (least recently used dropped)."""
        return self._alignments.get((victim, n_align, method, seed),
                                    lambda: self._fit_alignment(victim, n_align, method, seed))

    def _fit_alignment(self, victim: str, n_align: int, method: str, seed: int) -> align.Alignment:
        idx = align.choose_pairs(len(self.pool_attack), n_align, seed)  # same N checks for every victim
        if victim == self.bundle.image_encoder and victim not in self._extra_pools:
            # The attacker's own image tower: nothing to align. This is the no-alignment oracle.
            d = self.pool_attack.shape[1]
            return align.Alignment(np.eye(d, dtype=np.float32), "identity", 0, 1.0)
        X = self.victim_rows(victim, idx)
        fit = align.describe_fit(align.fit_alignment(X, self.pool_attack[idx], method), X, self.pool_attack[idx])
        fit.info["prior_cosine"] = align.prior_cosine(self.pool_attack, n_align, method, seed)
        return fit

    @property
    def pool_attack_T(self) -> np.ndarray:
        """pool_attack.T as a C-contiguous array, made once: the neighbour votes' product with every batch is a third
        faster with it than with the transposed view."""
        if self._pool_attack_T is None:
            self._pool_attack_T = np.ascontiguousarray(self.pool_attack.T)
        return self._pool_attack_T

    def pool_tags(self):
        """(pool, V) sparse 0/1 matrix: which vocabulary tags each public pool photo's captions have."""
        if self._pool_tags is None:
            tag_lists = self.bundle.pool.get("tags") or [[]] * len(self.pool_attack)
            self._pool_tags = retrieve.tag_matrix(tag_lists, {t: i for i, t in enumerate(self.bundle.tags)})
        return self._pool_tags

    def project(self, attack_embeddings: np.ndarray) -> np.ndarray:
        """Attack-space image embeddings (n, d) through the bundle's semantic features and image head: the space the
        tag vectors are scored in (retrieval and the attribute scores share it)."""
        b = self.bundle
        return retrieve.project_images(b.heads, retrieve.image_features(attack_embeddings, b.semantics))

    def retrieve(self, attack_embeddings: np.ndarray, k: int, own_rows=None,
                 projected: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """Top-k tags for attack-space image embeddings (n, d): prior-weighted retrieval plus the nearest public
        photos' tag votes (when the bundle's dev check gave them a weight), then the DCN-v2 ranker over the candidates
        when that check kept it. own_rows: each embedding's own pool row (-1: none), kept out of its vote.
        projected: `project(attack_embeddings)`, when the caller has it already."""
        if k < 1:
            raise SlimeError(f"k must be at least 1, got {k}.")
        b = self.bundle
        u = self.project(attack_embeddings) if projected is None else projected
        q, _ = retrieve.with_prior(u, self.tag_vecs, self.prior, b.manifest["logit_scale"], self.alpha)
        n_cand = max(k, b.manifest["candidates"]) if b.manifest.get("use_ranker") else k
        if self.votes.weight:
            bonus = self.votes.bonus(np.atleast_2d(attack_embeddings), self.pool_attack, self.pool_tags(), own_rows,
                                     self.pool_attack_T)
            scores, ids = retrieve.fused_topk(q, self.index.vectors, bonus, n_cand)
        else:
            scores, ids = self.index.search(q, n_cand)
        if b.manifest.get("use_ranker"):
            scores, ids = rerank(b.ranker, u, ids, self.tag_vecs, self.prior)
        return [[(b.tags[i], float(s)) for i, s in zip(row_ids[:k], row_s[:k])] for row_ids, row_s in zip(ids, scores)]

    def neighbours(self, attack_embeddings: np.ndarray, k: int = 5, exclude: set[str] = frozenset()) -> list[list[tuple[str, float]]]:
        names = self.bundle.pool["images"]
        sims = np.atleast_2d(attack_embeddings) @ self.pool_attack.T
        order = np.argsort(-sims, axis=1)
        return [[(names[j], float(row[j])) for j in idx if names[j] not in exclude][:k] for row, idx in zip(sims, order)]

    def attack_aligned(self, aligned: np.ndarray, k: int, own_rows=None, n_neighbours: int = 0) -> BatchAttack:
        """Attack-space embeddings (n, d) -> their top-k tags and (n_neighbours > 0) nearest public photos."""
        near = self.neighbours(aligned, n_neighbours) if n_neighbours else [[] for _ in range(len(aligned))]
        projected = self.project(aligned)
        return BatchAttack(aligned, self.retrieve(aligned, k, own_rows, projected), near, projected=projected)

    def attack_batch(self, fit: align.Alignment, X: np.ndarray, k: int, *, A_true: np.ndarray | None = None,
                     own_rows=None, n_neighbours: int = 0) -> BatchAttack:
        """The one batch core: victim embeddings X (n, d_victim) through the fitted map `fit`, then `attack_aligned`.
        A_true (n, d_attack): each image's true attacker embedding, for the alignment cosine of each row. own_rows:
        each row's own pool row when it is a public photo (-1: none), kept out of its neighbours' tag votes."""
        batch = self.attack_aligned(fit.transform(X), k, own_rows, n_neighbours)
        if A_true is not None:
            batch.cosines = align.cosines(batch.aligned, A_true)
        return batch

    def neighbour_tags(self, attack_embeddings: np.ndarray, k: int, exclude: set[str] = frozenset()) -> list[list[str]]:
        """Baseline: the k most frequent-in-vocabulary tags of the nearest public image."""
        rank = {t: i for i, t in enumerate(self.bundle.tags)}
        by_name = dict(zip(self.bundle.pool["images"], self.bundle.pool["tags"]))
        out = []
        for (name, _), *_ in self.neighbours(attack_embeddings, 1, exclude):
            out.append(sorted(by_name[name], key=lambda t: rank.get(t, len(rank)))[:k])
        return out

    def frequent_tags(self, k: int) -> list[str]:
        return self.bundle.tags[:k]  # the vocabulary is stored most frequent first

    # --- the low-fidelity image and the objects ---------------------------------------------------
    def pool_objects(self) -> dict[str, list[str]]:
        """Pool photo name -> the COCO classes a detector found in it, from the bundle's pool_objects.json (written
        by the build, `objects.write_pool_objects`); {} for a bundle without one."""
        if self._pool_objects is None:
            from slime_core.stages import objects  # imports the detector's torchvision: only once objects are asked for

            try:
                self._pool_objects = (objects.read_pool_objects(self.bundle.path) if self.bundle.path else None) or {}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise SlimeError(f"{Path(self.bundle.path) / objects.POOL_OBJECTS}: expected {{\"objects\": "
                                 f"{{pool image: [COCO class, ...]}}}}; the file is damaged (rebuild the bundle or "
                                 f"delete the file).") from None
        return self._pool_objects

    def generate_lowfi(self, aligned: np.ndarray, maker) -> tuple[object, dict]:
        """`maker`'s (lowfi.make_lowfi) image of one attack-space embedding `aligned` (d,) or (1, d), and
        {"method", "seconds", "image": None, "start"}. The offline maker starts from the mean TAEF2 latent of the
        nearest public photos where they are on disk (`start`: "nearest photos"), else from its regressor."""
        start = time.perf_counter()
        a = np.atleast_2d(aligned)[:1]
        info = {"method": maker.name, "image": None}
        if getattr(maker, "encoder", None) is not None:  # the offline generator can start from photos
            images, starts = maker.generate_with_starts(a, self.nearest_photos(a))
            info["start"] = starts[0]
        else:
            images = maker.generate(a)
        image = images[0]
        info["seconds"] = round(time.perf_counter() - start, 3)
        return image, info

    def objects_of(self, tags: list[str], image=None, nearest: str | None = None) -> dict:
        """The COCO classes named by `tags` (their nouns), detected in `image` (the generated picture; None: not
        made, "generated" is None) and in the public photo `nearest`, and their union (in that order)."""
        from slime_core.stages import (  # torchvision (~1 s): only an attack that lists objects pays for it
            detect,
            objects,
        )

        named = objects.objects_from_tags(tags)
        seen = detect.objects(detect.detect(image)) if image is not None else None
        near = list(self.pool_objects().get(nearest, [])) if nearest else []
        return {"tags": named, "generated": seen, "nearest": near,
                "union": list(dict.fromkeys(named + (seen or []) + near))}

    # --- the whole attack -------------------------------------------------------------------------
    def attack(self, image=None, *, embedding: np.ndarray | None = None, spec: AttackSpec = AttackSpec(),
               writer=None, n_neighbours: int = 5, name: str | None = None, scene_graph=None,
               final_from: tuple[str, ...] = (), lowfi=None) -> AttackResult:
        """Attack one image (path or PIL image, embedded with `spec.victim`) or one victim embedding, at one point of
        `spec` (one N, one k; checked against this attacker's pool and vocabulary before any work).

        scene_graph: None; "tags" for the offline graph built from the retrieved relational tags; or a
        `VLMInferrer`, which sees the tags and caption (never the victim's image: the attacker has only the embedding).
        final_from: parts of the scene graph ("objects", "relations", "scene") that a final caption is written from
        by `writer` (an LLM writer), as in the paper's ablation.
        lowfi: a low-fidelity image maker (`lowfi.make_lowfi`): the result then carries the generated image
        (`lowfi_image`, not serialised), `lowfi` (method, seconds) and `objects` (see AttackResult)."""
        if (image is None) == (embedding is None):
            raise SlimeError("give exactly one of an image or a victim embedding.")
        spec.single().within(self)
        final_from = check_final_parts(final_from)
        if final_from and (scene_graph is None or writer is None or not hasattr(writer, "write_prompt")):
            raise SlimeError("a final caption needs a scene graph (--scene-graph) and an LLM writer (--caption local or a model).")
        victim, k = spec.victim, spec.top_k
        alignment = self.alignment(victim, spec.n, spec.method, spec.seed)
        if embedding is None:
            embedding = self.embed(victim, [image])
        what = f"{name}: victim embedding" if name else "victim embedding"
        x = align.check_embeddings(np.atleast_2d(embedding), what)
        if x.shape[1] != alignment.input_dim:
            raise SlimeError(f"{what} has {x.shape[1]} dims; '{victim}' embeddings have {alignment.input_dim}.")
        batch = self.attack_batch(alignment, x, k, n_neighbours=n_neighbours)
        warnings = align.collapse_warnings(alignment, x)
        for text in warnings:
            log.warning("%s: %s", name or image or "embedding", text)
        tags, a = batch.tags[0], batch.aligned[0]
        caption = self.caption(tags, a, writer) if writer is not None else None
        graph = None
        if scene_graph == "tags":
            graph = asdict(graph_from_tags(tags))
        elif scene_graph is not None:
            graph = asdict(scene_graph.scene_graph(tags=tags, caption=caption))
        final = None
        if final_from:
            prompt = final_prompt_from(graph, final_from)
            final = writer.write_prompt(prompt).text if prompt else ""  # "": the chosen parts of the graph are empty
        label = name or (str(image) if isinstance(image, (str, Path)) else None)
        result = AttackResult.from_batch(batch, 0, image=label, victim=victim, attacker=self.bundle.attacker,
                                         fit=alignment, n_align=spec.n, k=k, caption=caption, scene_graph=graph,
                                         final_caption=final, warnings=warnings)
        if lowfi is not None:
            near = batch.neighbours[0]
            result.lowfi_image, result.lowfi = self.generate_lowfi(a, lowfi)
            result.objects = self.objects_of(tags, result.lowfi_image, near[0][0] if near else None)
        return result

    def caption(self, tags: list[str], aligned: np.ndarray, writer) -> str:
        """`writer`'s caption of retrieved tags for one attack-space embedding `aligned` (d,): the writer is given the
        captions of the `writer.neighbours` nearest public images (all of each image's captions, weighted by its
        similarity, when `writer.all_captions`; else the first of each) and uses them in its neighbour modes."""
        near = self.neighbours(aligned, writer.neighbours)[0]
        each = self.all_captions_of if writer.all_captions else (lambda name: self.captions_of([name])[:1])
        near_captions = [(c, score) for name, score in near for c in each(name)]
        if "neighbours" in writer.mode and not near_captions:
            raise SlimeError(f"caption mode '{writer.mode}' needs the public pool's captions, which are not in "
                             f"{self.data} (set SLIME_DATA or --pool-data to the dataset the bundle was built from, "
                             f"or use --caption local).")
        return writer.write(tags, [c for c, _ in near_captions], [w for _, w in near_captions]).text

    def all_captions_of(self, name: str) -> list[str]:
        """Every caption of one public image, from the dataset folder when it is there ([] otherwise)."""
        if self._captions is None:
            try:
                self._captions = {s.name: s.captions for s in load_folder(self.data, require_images=False)}
            except SlimeError:
                self._captions = {}
        return list(self._captions.get(name) or [])

    def captions_of(self, names: list[str]) -> list[str]:
        """First caption of each named public image that has one."""
        return [caps[0] for caps in map(self.all_captions_of, names) if caps]


def lowfi_maker(method: str, image_encoder: str):
    """`lowfi.make_lowfi(method, image_encoder)`, loaded once per process (loaded_models): every app session shares
    one generator. A maker that cannot load raises (MissingModelError, or SlimeError for a wrong pairing) and
    nothing is kept, so the next call tries again."""
    return loaded_models.shared(("lowfi", method, image_encoder), lambda: lowfi.make_lowfi(method, image_encoder))


class _CachedOnly:
    """Stands in for an encoder in the on-disk embedding cache: the real encoder is built only on a cache miss.
    Same cache key as the real encoder (its fingerprint), so overridden (e.g. tiny test) models stay apart."""

    def __init__(self, attacker, name: str):
        self.attacker, self.name, self.cache_key = attacker, name, fingerprint(name)
        self.weights_id = weights_identity(name)  # the real encoder's, so both find the same cache entries
        self.dim = encoder_cfg(name).dim  # only for an empty list; rows take the model's own width

    def encode_images(self, images, batch_size: int = 16, progress: bool = False):
        return self.attacker.encoder(self.name).encode_images(images, batch_size=batch_size, progress=progress)


def embed_cached(attacker, victim: str, images: list) -> np.ndarray:
    """Victim embeddings via the attacker's disk cache, without loading the encoder when every image is cached."""
    return attacker.cache.encode_images(_CachedOnly(attacker, victim), images)
