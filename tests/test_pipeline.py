"""The attack end to end on the committed default bundle: images, embeddings, the oracle, and the error paths."""

import numpy as np
import pytest

from conftest import BLACK_DOG, DEMO, TAN_DOG
from slime_core.align import fit_alignment
from slime_core.errors import SlimeError
from slime_core.pipeline import AttackResult
from slime_core.write import CaptionWriter

pytestmark = pytest.mark.slow  # real weights: EfficientNet-Lite, MiniLM, spaCy, the default bundle

FIELDS = {"image", "victim", "attacker", "n_align", "k", "alignment_cosine", "tags", "neighbors", "caption"}


@pytest.fixture(scope="module")
def dog_attack(attacker):
    return attacker.attack(image=str(DEMO / "images" / BLACK_DOG), victim="lite0", n_align=300, k=10)


def test_attack_on_an_image(dog_attack, attacker):
    r = dog_attack
    assert isinstance(r, AttackResult)
    assert FIELDS <= set(r.to_dict())  # the CLI's JSON contract
    assert r.image.endswith(BLACK_DOG) and r.victim == "lite0" and r.attacker == "lite2-minilm"
    assert r.n_align == 300 and r.k == 10 and r.caption is None
    assert 0.0 < r.alignment_cosine <= 1.0
    assert len(r.tags) == 10 and len({t["tag"] for t in r.tags}) == 10
    scores = [t["score"] for t in r.tags]
    assert scores == sorted(scores, reverse=True)
    assert all(t["tag"] in attacker.bundle.tags for t in r.tags)
    assert len(r.neighbors) == 5
    assert all(n["image"] in attacker.bundle.pool["images"] for n in r.neighbors)
    sims = [n["score"] for n in r.neighbors]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    assert r.aligned.shape == (1280,)
    assert np.linalg.norm(r.aligned) == pytest.approx(1.0, abs=1e-5)


def test_attack_leaks_what_the_photo_shows(dog_attack):
    """A black dog photo, seen only through lite0, yields dog tags from the lite2 attacker."""
    assert any("dog" in t["tag"].split() for t in dog_attack.tags[:5]), dog_attack.tags


def test_embedding_input_matches_image_input(attacker, dog_attack):
    emb = attacker.embed("lite0", [str(DEMO / "images" / BLACK_DOG)])
    assert emb.shape == (1, 1280)
    r = attacker.attack(embedding=emb[0], victim="lite0", n_align=300, k=10, name="emb")
    assert r.image == "emb"
    assert [t["tag"] for t in r.tags] == [t["tag"] for t in dog_attack.tags]
    assert r.alignment_cosine == dog_attack.alignment_cosine


def test_alignment_is_cached_and_matches_a_direct_fit(attacker):
    a = attacker.alignment("lite0", 50, seed=3)
    assert attacker.alignment("lite0", 50, seed=3) is a
    assert attacker.alignment("lite0", 50, seed=4) is not a
    assert a.n_pairs == 50 and a.W.shape == (1280, 1280)
    from slime_core.align import choose_pairs

    idx = choose_pairs(len(attacker.pool_attack), 50, 3)
    direct = fit_alignment(attacker.bundle.pool_embeddings["lite0"][idx], attacker.pool_attack[idx])
    np.testing.assert_allclose(a.W, direct.W, atol=1e-5)


def test_more_pairs_align_better(attacker):
    assert attacker.alignment("lite0", 300).heldout_cosine > attacker.alignment("lite0", 20).heldout_cosine


def test_oracle_victim(attacker):
    """victim lite2 = the attacker's own image tower: alignment is (nearly) the identity, and a pool image's
    nearest neighbour is itself."""
    i = 7
    emb = attacker.bundle.pool_embeddings["lite2"][i]
    r = attacker.attack(embedding=emb, victim="lite2", n_align=300, k=5)
    assert r.alignment_cosine > 0.95
    assert r.neighbors[0]["image"] == attacker.bundle.pool["images"][i]
    assert r.neighbors[0]["score"] > 0.95
    direct = [t for t, _ in attacker.retrieve(emb[None, :], 5)[0]]
    assert len(set(direct) & {t["tag"] for t in r.tags}) >= 3


def test_oracle_on_a_photo(attacker):
    path = str(DEMO / "images" / TAN_DOG)
    r = attacker.attack(image=path, victim="lite2", n_align=100, k=5)
    assert len(r.tags) == 5
    assert r.alignment_cosine > 0.99
    # no alignment: the tags are those retrieved from the photo's own lite2 embedding
    own = attacker.retrieve(attacker.embed("lite2", [path]), 5)[0]
    assert [t["tag"] for t in r.tags] == [t for t, _ in own]


def test_retrieve_batch(attacker):
    A = attacker.bundle.pool_embeddings["lite2"][:3]
    out = attacker.retrieve(A, 4)
    assert len(out) == 3 and all(len(row) == 4 for row in out)
    assert all(isinstance(t, str) and isinstance(s, float) for row in out for t, s in row)
    with pytest.raises(SlimeError, match="k must be at least 1"):
        attacker.retrieve(A, 0)


def test_baselines(attacker):
    b = attacker.bundle
    assert attacker.frequent_tags(3) == b.tags[:3]
    name, emb = b.pool["images"][0], b.pool_embeddings["lite2"][:1]
    # a pool image's nearest public image (in attack space) is itself, so the baseline returns its own tags,
    # most frequent vocabulary tags first
    assert attacker.neighbours(emb, 1)[0][0][0] == name
    rank = {t: i for i, t in enumerate(b.tags)}
    want = sorted(b.pool["tags"][0], key=lambda t: rank.get(t, len(rank)))[:4]
    assert attacker.neighbour_tags(emb, 4) == [want]
    excluded = attacker.neighbours(emb, 3, exclude={name})[0]
    assert name not in [n for n, _ in excluded] and len(excluded) == 3


def test_custom_victim_pool(attacker):
    """A victim the bundle lacks, given as pool embeddings, behaves exactly like the same data under its own name."""
    lite0_pool = attacker.bundle.pool_embeddings["lite0"]
    attacker.add_victim_pool("my-service", lite0_pool)
    emb = lite0_pool[11]
    mine = attacker.attack(embedding=emb, victim="my-service", n_align=100, k=5)
    ref = attacker.attack(embedding=emb, victim="lite0", n_align=100, k=5)
    assert mine.victim == "my-service"
    assert [t["tag"] for t in mine.tags] == [t["tag"] for t in ref.tags]


# ---------------------------------------------------------------- errors


def test_add_victim_pool_wrong_rows(attacker):
    n = len(attacker.pool_attack)
    with pytest.raises(SlimeError, match=f"have {n - 1} rows; the pool has {n} images"):
        attacker.add_victim_pool("svc", np.ones((n - 1, 16), np.float32))
    bad = np.ones((n, 16), np.float32)
    bad[3, 0] = np.nan
    with pytest.raises(SlimeError, match="NaN or inf"):
        attacker.add_victim_pool("svc", bad)


def test_wrong_dimension_embedding(attacker):
    with pytest.raises(SlimeError, match="victim embedding has 512 dims; 'lite0' embeddings have 1280"):
        attacker.attack(embedding=np.ones(512, np.float32), victim="lite0", n_align=30)


def test_non_finite_embedding(attacker):
    emb = np.ones(1280, np.float32)
    emb[5] = np.inf
    with pytest.raises(SlimeError, match="NaN or inf"):
        attacker.attack(embedding=emb, victim="lite0", n_align=30)


def test_n_beyond_pool(attacker):
    n = len(attacker.pool_attack)
    with pytest.raises(SlimeError, match=f"N={n + 1} alignment pairs asked for, but the public pool holds only {n}"):
        attacker.attack(embedding=np.ones(1280, np.float32), victim="lite0", n_align=n + 1)


def test_image_or_embedding_not_both(attacker):
    with pytest.raises(SlimeError, match="exactly one"):
        attacker.attack()
    with pytest.raises(SlimeError, match="exactly one"):
        attacker.attack(image=str(DEMO / "images" / BLACK_DOG), embedding=np.ones(1280))


def test_unknown_victim(attacker):
    with pytest.raises(SlimeError, match="unknown encoder 'nobody'"):
        attacker.attack(embedding=np.ones(1280), victim="nobody", n_align=30)


def test_missing_and_corrupt_images(attacker, tmp_path):
    with pytest.raises(SlimeError, match="no such image file"):
        attacker.attack(image=str(tmp_path / "absent.jpg"), victim="lite0", n_align=30)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(SlimeError, match="not a readable image"):
        attacker.attack(image=str(tmp_path / "bad.jpg"), victim="lite0", n_align=30)


class EchoWriter(CaptionWriter):
    """An LLM stand-in that answers with the last line of its prompt, so the test sees what it was given."""

    model = "echo"

    def _generate(self, messages):
        return messages[-1]["content"].splitlines()[-2], 0.0  # the line before "Caption:"


def test_scene_graph_and_final_caption(attacker, dog_attack):
    x = attacker.bundle.pool_embeddings["lite0"][0]
    r = attacker.attack(embedding=x, victim="lite0", k=10, scene_graph="tags", writer=EchoWriter(),
                        final_from=("objects",))
    tags = [t["tag"] for t in r.tags]
    nouns = {t.split()[-1] for t in tags}
    assert set(r.scene_graph["objects"]) <= {w for t in tags for w in t.split()}
    assert nouns & set(r.scene_graph["objects"])
    assert r.final_caption.startswith("Objects: ") and r.final_caption[len("Objects: "):].split(", ") == r.scene_graph["objects"]
    with pytest.raises(SlimeError, match="needs a scene graph"):
        attacker.attack(embedding=x, victim="lite0", writer=EchoWriter(), final_from=("objects",))
    with pytest.raises(SlimeError, match="objects, relations or scene"):
        attacker.attack(embedding=x, victim="lite0", scene_graph="tags", writer=EchoWriter(), final_from=("colour",))


def test_neighbour_captions_missing_is_a_clear_error(default_bundle, tmp_path):
    from slime_core.pipeline import Attacker
    from slime_core.write import ConsensusWriter

    bare = Attacker(default_bundle, data=tmp_path)  # a fresh clone: no pool captions anywhere
    x = default_bundle.pool_embeddings["lite0"][0]
    with pytest.raises(SlimeError, match="public pool's captions"):
        bare.attack(embedding=x, victim="lite0", writer=ConsensusWriter())
