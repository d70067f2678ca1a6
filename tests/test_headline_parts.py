"""The app headline's parts that live outside the numbers: the scene graph as Graphviz DOT, the headline's words,
and the small JSON caches the gallery's scores are kept in."""

import json

from slime_core.infra import files
from slime_core.present import headline_words as hw
from slime_core.present.scene_graph_dot import SEEN_FILL, SEEN_IN_IMAGE, scene_graph_dot
from slime_core.stages.infer import SceneGraph


def test_scene_graph_dot_draws_objects_relations_and_what_the_image_showed():
    graph = SceneGraph(objects=["dog", 'the "ball"'], attributes={"dog": ["black", "wet", "small", "old"]},
                       raw_relations=[("dog", "chase_after", 'the "ball"'), ("dog", "chase", "cat")])
    dot = scene_graph_dot(graph, font_size=14, seen=["dog", "person"])
    lines = dot.splitlines()
    assert lines[0] == "digraph scene {" and lines[-1] == "}" and "fontsize=14" in dot and "fontsize=12" in dot
    assert f'n0 [label="dog\n(black, wet, small)\n{SEEN_IN_IMAGE}", fillcolor="{SEEN_FILL}"];' in dot  # 3 attributes
    assert r'n1 [label="the \"ball\""];' in dot  # quotes escaped: the DOT stays valid
    assert f'seen0 [label="person\n{SEEN_IN_IMAGE}"' in dot and "dashed" in dot  # seen, named by no object
    assert 'n0 -> n1 [label="chase after"];' in dot and "cat" not in dot  # a relation to a missing object is left out
    assert "no objects in the recovered tags" in scene_graph_dot(SceneGraph())


def test_headline_words_put_each_figure_beside_its_prior():
    assert "gave away 0.12 more than the prior" in hw.tag_headline(0.2, 0.08, 10)
    assert "guessing the 10 most frequent tags" in hw.tag_headline(0.2, 0.08, 10)
    assert hw.caption_headline(0.301, 0.299).endswith("no more than the prior.")
    assert "0.05 less than the prior" in hw.caption_headline(0.25, 0.30)
    assert hw.percentile_words(75, 125) == "better than 75% of the 125 test photos"
    assert hw.percentile_words(20, 125) == "worse than 80% of the 125 test photos"
    assert hw.metric_name("exact_f1") == "exact tag F1" and hw.metric_name("some_key") == "some key"


def test_json_cache_round_trip_and_misses(tmp_path):
    key = files.cache_key("gallery", 300, ["a", "b"])
    assert len(key) == 16 and key == files.cache_key("gallery", 300, ["a", "b"]) != files.cache_key("gallery", 30)
    path = tmp_path / "sub" / f"{key}.json"
    files.save_json_atomic(path, {"names": ["x.jpg"], "gain": [0.25]})
    assert files.load_json(path) == {"names": ["x.jpg"], "gain": [0.25]}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it
    path.write_text('{"names": [')  # half a file, as a crash mid-write without the rename would leave
    assert files.load_json(path) is None
    assert files.load_json(tmp_path / "missing.json") is None and files.load_json(tmp_path) is None
    path.write_text(json.dumps([[[]]] * 3))
    assert files.load_json(path) == [[[]]] * 3


def test_tag_chips_colour_each_class_and_escape_the_tag():
    from slime_core.present.tag_chips import COLOURS, chips

    out = chips([("dog run", "exact"), ("<b>x</b>", "miss"), ("red ball", "neighbourhood")])
    spans = out.split(" <span")
    assert len(spans) == 3 and 'data-class="exact"' in spans[0] and f"background:{COLOURS['exact'][0]}" in spans[0]
    assert "&lt;b&gt;x&lt;/b&gt;" in spans[1] and "<b>" not in out  # a tag is text, never markup
    assert 'class="slime-tag slime-neighbourhood"' in spans[2] and chips([]) == ""
