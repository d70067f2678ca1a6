"""Inference stages: tags -> scene graph offline, the VLM path with litellm's mock responses, and scores."""

import json

import pytest
from PIL import Image

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.infer import (
    SceneGraph,
    VLMInferrer,
    graph_from_tags,
    lemma,
    map_predicate,
    object_f1,
    parse_tag,
    relation_f1,
    scene_f1,
)

# ---------------------------------------------------------------- offline


def test_parse_tag_shapes():
    assert parse_tag("black dog") == ("black", "dog")
    assert parse_tag("dog chase ball") == ("dog", "chase", "", "ball")
    assert parse_tag("man sit on bench") == ("man", "sit", "on", "bench")
    assert parse_tag("man in shirt") == ("man", "", "in", "shirt")
    assert parse_tag("car park next to house") == ("car", "park", "next to", "house")


@pytest.mark.parametrize("verb,prep,want", [
    ("sit", "on", "on"), ("stand", "on", "on"), ("lay", "on", "on"), ("", "in", "inside"), ("sit", "inside", "inside"),
    ("stand", "beside", "next_to"), ("park", "near", "next_to"), ("stand", "next to", "next_to"),
    ("sit", "under", "under"), ("", "below", "under"), ("fly", "over", "over"), ("", "above", "over"),
    ("hang", "over", "hanging_over"), ("cover", "", "covering"), ("surround", "", "enclosing"), ("", "of", "part_of"),
    ("chase", "", None), ("ride", "", None), ("", "with", None),
])
def test_predicate_mapping(verb, prep, want):
    assert map_predicate(verb, prep) == want


def test_graph_from_tags_known_graph():
    tags = ["dog chase ball", "man sit on bench", "black dog", "brown bench", "black dog", "dog near man"]
    g = graph_from_tags(tags)
    assert g.objects == ["dog", "ball", "man", "bench"]
    assert g.attributes == {"dog": ["black"], "bench": ["brown"]}
    assert g.relations == [("man", "on", "bench"), ("dog", "next_to", "man")]
    assert g.raw_relations == [("dog", "chase", "ball"), ("man", "sit on", "bench"), ("dog", "near", "man")]
    assert g.scene is None
    assert SceneGraph.from_json(g.to_json()) == g
    named = graph_from_tags(tags, scene_writer=lambda t: "park" if "man sit on bench" in t else None)
    assert named.scene == "park"


# ---------------------------------------------------------------- VLM via litellm mock_response


@pytest.fixture
def mock_llm(monkeypatch):
    """Queue of replies fed to the real litellm.completion as mock_response; records the messages sent."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch on import
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    litellm = pytest.importorskip("litellm")
    real, calls, replies = litellm.completion, [], []

    def fake(**kw):
        calls.append(kw["messages"])
        return real(**kw, mock_response=replies.pop(0))

    monkeypatch.setattr(litellm, "completion", fake)
    return replies, calls


def test_vlm_valid_json_with_image(mock_llm):
    replies, calls = mock_llm
    replies += [json.dumps({"objects": ["Dog", "ball"], "attributes": {"dog": ["black"]}}),
                '```json\n{"relations": [{"subject": "dog", "predicate": "next to", "object": "ball"}]}\n```',
                json.dumps({"scene": "Park"})]
    vlm = VLMInferrer("gpt-4o-mini", retries=0)
    g = vlm.scene_graph(image=Image.new("RGB", (8, 8)), tags=["dog chase ball"], caption="a dog in a park")
    assert g == SceneGraph(["dog", "ball"], {"dog": ["black"]}, [("dog", "next_to", "ball")], "park")
    first = calls[0][1]["content"]
    assert first[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "dog chase ball" in first[1]["text"] and "a dog in a park" in first[1]["text"]
    assert "Objects found so far: dog, ball" in calls[1][1]["content"][-1]["text"]  # later stages see earlier ones
    assert "dog next_to ball" in calls[2][1]["content"][-1]["text"]


def test_vlm_retry_feeds_error_back(mock_llm):
    replies, calls = mock_llm
    replies += ["sure! here are the objects: dog", json.dumps({"objects": ["dog"]})]
    out = VLMInferrer("gpt-4o-mini", retries=1).objects(caption="a dog")
    assert out.objects == ["dog"] and len(calls) == 2
    assert calls[1][-1]["role"] == "user" and "not valid" in calls[1][-1]["content"]


def test_vlm_always_invalid_is_clear_error(mock_llm):
    replies, _ = mock_llm
    replies += ["not json"] * 3
    with pytest.raises(SlimeError, match="no valid ObjectsOut after 3 tries"):
        VLMInferrer("gpt-4o-mini", retries=2).objects(tags=["dog chase ball"])


def test_vlm_rejects_predicates_outside_set(mock_llm):
    replies, _ = mock_llm
    bad = json.dumps({"relations": [{"subject": "man", "predicate": "holding", "object": "cup"}]})
    replies += [bad, bad]
    with pytest.raises(SlimeError, match="predicate"):
        VLMInferrer("gpt-4o-mini", retries=1).relations(caption="a man holding a cup")


def test_vlm_needs_evidence_and_key(monkeypatch):
    with pytest.raises(SlimeError, match="at least one"):
        VLMInferrer("gpt-4o-mini").objects()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingModelError, match="OPENAI_API_KEY"):
        VLMInferrer("gpt-4o-mini").objects(caption="a dog")

# ---------------------------------------------------------------- scores


def test_lemma_rules():
    assert [lemma(w) for w in ["Dogs", "boxes", "benches", "glasses", "men", "skies", "bus", "grass", "dog"]] == \
        ["dog", "box", "bench", "glass", "man", "sky", "bus", "grass", "dog"]


def test_lemmas_come_from_wordnet_not_suffix_rules(wordnet):
    # issue 15: the hand-rolled rules gave buses -> buse, wolves -> wolve, species -> specy, news -> new
    assert [lemma(w) for w in ["buses", "wolves", "species", "news", "children", "people"]] == \
        ["bus", "wolf", "species", "news", "child", "person"]
    assert lemma("hanging", "v") == "hang" and map_predicate("hangs", "over") == "hanging_over"


def test_object_f1_known():
    s = object_f1(["dogs", "ball", "cat"], ["dog", "Ball", "bench", "tree"])
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert object_f1([], ["dog"])["f1"] == 0.0


def test_relation_f1_known():
    pred = [("dog", "on", "sofa"), ("cat", "under", "table"), ("men", "next_to", "car")]
    ref = [("dog", "on", "sofa"), ("cat", "on", "table"), ("lamp", "over", "table"), ("man", "next_to", "car")]
    s = relation_f1(pred, ref)
    assert s["triple"]["precision"] == pytest.approx(2 / 3) and s["triple"]["recall"] == pytest.approx(2 / 4)
    assert s["pair"]["precision"] == pytest.approx(1.0) and s["pair"]["recall"] == pytest.approx(3 / 4)
    # predicates: pred {on, under, next_to}, ref {on, on, over, next_to} -> 2 hits
    assert s["predicate"]["precision"] == pytest.approx(2 / 3) and s["predicate"]["recall"] == pytest.approx(2 / 4)


def test_scene_f1_known():
    assert scene_f1("city street", "busy city streets")["f1"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert scene_f1("kitchen", "Kitchen", exact=True)["f1"] == 1.0
    assert scene_f1("kitchen", "living room", exact=True)["f1"] == 0.0
    assert scene_f1(None, "park")["recall"] == 0.0
