"""The attack end to end: its mechanics (result fields, embeddings, caching, the oracle, baselines, every
error path) on the tiny bundle; known answers on the committed default bundle, marked `slow`."""

import numpy as np
import pytest

from slime_core.attack_spec import AttackSpec
from slime_core.infra.errors import SlimeError
from slime_core.pipeline import AttackResult
from slime_core.stages.align import choose_pairs, fit_alignment
from slime_core.stages.write import CaptionWriter

from conftest import BLACK_DOG, DEMO, TAN_DOG, TINY_ATTACKER, TINY_DIM, TINY_VICTIM, TINY_VICTIM_DIM

FIELDS = {"image", "victim", "attacker", "n_align", "k", "alignment_cosine", "tags", "neighbors", "caption"}
DOG = str(DEMO / "images" / BLACK_DOG)


@pytest.fixture
def dog_attack(tiny_attacker):
    return tiny_attacker.attack(image=DOG, spec=AttackSpec(TINY_VICTIM, 30, 10))


def test_attack_on_an_image(dog_attack, tiny_attacker):
    r = dog_attack
    assert isinstance(r, AttackResult)
    assert FIELDS <= set(r.to_dict())  # the CLI's JSON contract
    assert r.image.endswith(BLACK_DOG) and r.victim == TINY_VICTIM and r.attacker == TINY_ATTACKER
    assert r.n_align == 30 and r.k == 10 and r.caption is None
    assert 0.0 < r.alignment_cosine <= 1.0
    assert len(r.tags) == 10 and len({t["tag"] for t in r.tags}) == 10
    scores = [t["score"] for t in r.tags]
    assert scores == sorted(scores, reverse=True)
    assert all(t["tag"] in tiny_attacker.bundle.tags for t in r.tags)
    assert len(r.neighbours) == 5
    assert all(n["image"] in tiny_attacker.bundle.pool["images"] for n in r.neighbours)
    sims = [n["score"] for n in r.neighbours]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    assert r.aligned.shape == (TINY_DIM,)
    assert np.linalg.norm(r.aligned) == pytest.approx(1.0, abs=1e-5)


def test_embedding_input_matches_image_input(tiny_attacker, dog_attack):
    emb = tiny_attacker.embed(TINY_VICTIM, [DOG])
    assert emb.shape == (1, TINY_VICTIM_DIM)
    r = tiny_attacker.attack(embedding=emb[0], spec=AttackSpec(TINY_VICTIM, 30, 10), name="emb")
    assert r.image == "emb"
    assert [t["tag"] for t in r.tags] == [t["tag"] for t in dog_attack.tags]
    assert r.alignment_cosine == dog_attack.alignment_cosine


def test_alignment_is_cached_and_matches_a_direct_fit(tiny_attacker):
    a = tiny_attacker.alignment(TINY_VICTIM, 20, seed=3)
    assert tiny_attacker.alignment(TINY_VICTIM, 20, seed=3) is a
    assert tiny_attacker.alignment(TINY_VICTIM, 20, seed=4) is not a
    assert a.n_pairs == 20 and a.W.shape == (TINY_VICTIM_DIM, TINY_DIM)
    idx = choose_pairs(len(tiny_attacker.pool_attack), 20, 3)
    direct = fit_alignment(tiny_attacker.bundle.pool_embeddings[TINY_VICTIM][idx], tiny_attacker.pool_attack[idx])
    np.testing.assert_allclose(a.W, direct.W, atol=1e-5)


def test_oracle_victim(tiny_attacker):
    """victim = the attacker's own image tower: alignment is the identity, a pool image's nearest neighbour is
    itself, and the tags are those retrieved from the embedding directly."""
    i = 7
    emb = tiny_attacker.bundle.pool_embeddings[TINY_ATTACKER][i]
    r = tiny_attacker.attack(embedding=emb, spec=AttackSpec(TINY_ATTACKER, 30, 5))
    assert r.alignment_cosine > 0.99
    assert r.neighbours[0]["image"] == tiny_attacker.bundle.pool["images"][i]
    assert r.neighbours[0]["score"] > 0.99
    direct = [t for t, _ in tiny_attacker.retrieve(emb[None, :], 5)[0]]
    assert [t["tag"] for t in r.tags] == direct


def test_oracle_on_a_photo(tiny_attacker):
    path = str(DEMO / "images" / TAN_DOG)
    r = tiny_attacker.attack(image=path, spec=AttackSpec(TINY_ATTACKER, 20, 5))
    assert len(r.tags) == 5
    assert r.alignment_cosine > 0.99
    # no alignment: the tags are those retrieved from the photo's own attacker embedding
    own = tiny_attacker.retrieve(tiny_attacker.embed(TINY_ATTACKER, [path]), 5)[0]
    assert [t["tag"] for t in r.tags] == [t for t, _ in own]


def test_retrieve_batch(tiny_attacker):
    A = tiny_attacker.bundle.pool_embeddings[TINY_ATTACKER][:3]
    out = tiny_attacker.retrieve(A, 4)
    assert len(out) == 3 and all(len(row) == 4 for row in out)
    assert all(isinstance(t, str) and isinstance(s, float) for row in out for t, s in row)
    with pytest.raises(SlimeError, match="k must be at least 1"):
        tiny_attacker.retrieve(A, 0)


def test_baselines(tiny_attacker):
    b = tiny_attacker.bundle
    assert tiny_attacker.frequent_tags(3) == b.tags[:3]
    name, emb = b.pool["images"][0], b.pool_embeddings[TINY_ATTACKER][:1]
    # a pool image's nearest public image (in attack space) is itself, so the baseline returns its own tags,
    # most frequent vocabulary tags first
    assert tiny_attacker.neighbours(emb, 1)[0][0][0] == name
    rank = {t: i for i, t in enumerate(b.tags)}
    want = sorted(b.pool["tags"][0], key=lambda t: rank.get(t, len(rank)))[:4]
    assert tiny_attacker.neighbour_tags(emb, 4) == [want]
    excluded = tiny_attacker.neighbours(emb, 3, exclude={name})[0]
    assert name not in [n for n, _ in excluded] and len(excluded) == 3


def test_custom_victim_pool(tiny_attacker):
    """A victim the bundle lacks, given as pool embeddings, behaves exactly like the same data under its own name."""
    victim_pool = tiny_attacker.bundle.pool_embeddings[TINY_VICTIM]
    tiny_attacker.add_victim_pool("my-service", victim_pool)
    emb = victim_pool[11]
    mine = tiny_attacker.attack(embedding=emb, spec=AttackSpec("my-service", 30, 5))
    ref = tiny_attacker.attack(embedding=emb, spec=AttackSpec(TINY_VICTIM, 30, 5))
    assert mine.victim == "my-service"
    assert [t["tag"] for t in mine.tags] == [t["tag"] for t in ref.tags]
    assert [t["score"] for t in mine.tags] == [t["score"] for t in ref.tags]


# ---------------------------------------------------------------- errors


def test_add_victim_pool_wrong_rows(tiny_attacker):
    n = len(tiny_attacker.pool_attack)
    with pytest.raises(SlimeError, match=f"{n - 1} rows; the pool has {n} images"):
        tiny_attacker.add_victim_pool("svc", np.ones((n - 1, 16), np.float32))
    bad = np.ones((n, 16), np.float32)
    bad[3, 0] = np.nan
    with pytest.raises(SlimeError, match="NaN or inf"):
        tiny_attacker.add_victim_pool("svc", bad)


def test_wrong_dimension_embedding(tiny_attacker):
    with pytest.raises(SlimeError, match=f"victim embedding has 512 dims; '{TINY_VICTIM}' embeddings have {TINY_VICTIM_DIM}"):
        tiny_attacker.attack(embedding=np.ones(512, np.float32), spec=AttackSpec(TINY_VICTIM, 30))


def test_non_finite_embedding(tiny_attacker):
    emb = np.ones(TINY_VICTIM_DIM, np.float32)
    emb[5] = np.inf
    with pytest.raises(SlimeError, match="NaN or inf"):
        tiny_attacker.attack(embedding=emb, spec=AttackSpec(TINY_VICTIM, 30))


def test_n_beyond_pool(tiny_attacker):
    n = len(tiny_attacker.pool_attack)
    with pytest.raises(SlimeError, match=f"N={n + 1} alignment pairs asked; the public pool holds {n} images"):
        tiny_attacker.attack(embedding=np.ones(TINY_VICTIM_DIM, np.float32), spec=AttackSpec(TINY_VICTIM, n + 1))


def test_image_or_embedding_not_both(tiny_attacker):
    with pytest.raises(SlimeError, match="exactly one"):
        tiny_attacker.attack()
    with pytest.raises(SlimeError, match="exactly one"):
        tiny_attacker.attack(image=DOG, embedding=np.ones(TINY_VICTIM_DIM))


def test_unknown_victim(tiny_attacker):
    with pytest.raises(SlimeError, match="unknown encoder 'nobody'"):
        tiny_attacker.attack(embedding=np.ones(TINY_VICTIM_DIM), spec=AttackSpec("nobody", 30))


def test_missing_and_corrupt_images(tiny_attacker, tmp_path):
    with pytest.raises(SlimeError, match="no such image file"):
        tiny_attacker.attack(image=str(tmp_path / "absent.jpg"), spec=AttackSpec(TINY_VICTIM, 30))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(SlimeError, match="not a readable image"):
        tiny_attacker.attack(image=str(tmp_path / "bad.jpg"), spec=AttackSpec(TINY_VICTIM, 30))


class EchoWriter(CaptionWriter):
    """An LLM stand-in that answers with the last line of its prompt, so the test sees what it was given."""

    model = "echo"

    def _generate(self, messages):
        return messages[-1]["content"].splitlines()[-2], 0.0  # the line before "Caption:"


def test_scene_graph_and_final_caption(tiny_attacker):
    x = tiny_attacker.bundle.pool_embeddings[TINY_VICTIM][0]
    r = tiny_attacker.attack(embedding=x, spec=AttackSpec(TINY_VICTIM, 30, 10), scene_graph="tags", writer=EchoWriter(),
                             final_from=("objects",))
    tags = [t["tag"] for t in r.tags]
    nouns = {t.split()[-1] for t in tags}
    assert set(r.scene_graph["objects"]) <= {w for t in tags for w in t.split()}
    assert nouns & set(r.scene_graph["objects"])
    assert r.final_caption.startswith("Objects: ") and r.final_caption[len("Objects: "):].split(", ") == r.scene_graph["objects"]
    with pytest.raises(SlimeError, match="needs a scene graph"):
        tiny_attacker.attack(embedding=x, spec=AttackSpec(TINY_VICTIM, 30), writer=EchoWriter(), final_from=("objects",))
    with pytest.raises(SlimeError, match="objects, relations or scene"):
        tiny_attacker.attack(embedding=x, spec=AttackSpec(TINY_VICTIM, 30), scene_graph="tags", writer=EchoWriter(),
                             final_from=("colour",))


def test_neighbour_captions_missing_is_a_clear_error(tiny_bundle, tmp_path):
    from slime_core.pipeline import Attacker
    from slime_core.stages.write import ConsensusWriter

    bare = Attacker(tiny_bundle, data=tmp_path)  # a fresh clone: no pool captions anywhere
    x = tiny_bundle.pool_embeddings[TINY_VICTIM][0]
    with pytest.raises(SlimeError, match="public pool's captions"):
        bare.attack(embedding=x, spec=AttackSpec(TINY_VICTIM, 30), writer=ConsensusWriter())


# ---------------------------------------------------------------- known answers on the real default attacker


@pytest.fixture(scope="module")
def real_dog_attack(attacker):
    return attacker.attack(image=DOG, spec=AttackSpec("lite0", 300, 10))


@pytest.mark.slow
def test_real_attack_contract(real_dog_attack, attacker):
    r = real_dog_attack
    assert r.victim == "lite0" and r.attacker == "lite2-minilm" and r.n_align == 300
    assert 0.0 < r.alignment_cosine <= 1.0
    assert len(r.tags) == 10 and all(t["tag"] in attacker.bundle.tags for t in r.tags)
    assert r.aligned.shape == (1280,)


@pytest.mark.slow
def test_attack_leaks_what_the_photo_shows(real_dog_attack):
    """A black dog photo, seen only through lite0, yields dog tags from the lite2 attacker."""
    assert any("dog" in t["tag"].split() for t in real_dog_attack.tags[:5]), real_dog_attack.tags


@pytest.mark.slow
def test_more_pairs_align_better(attacker):
    assert attacker.alignment("lite0", 300).heldout_cosine > attacker.alignment("lite0", 20).heldout_cosine


@pytest.mark.slow
def test_real_oracle_victim(attacker):
    """victim lite2 = the real attacker's own image tower: a pool image's nearest neighbour is itself."""
    i = 7
    emb = attacker.bundle.pool_embeddings["lite2"][i]
    r = attacker.attack(embedding=emb, spec=AttackSpec("lite2", 300, 5))
    assert r.alignment_cosine > 0.95
    assert r.neighbours[0]["image"] == attacker.bundle.pool["images"][i] and r.neighbours[0]["score"] > 0.95
