"""The registries (alignment methods, writers, tag parsers): an unknown name is a one-line SlimeError naming the
known ones, and a member registered in a test is listed and used, then removed."""

import numpy as np
import pytest

from slime_core.infra.errors import SlimeError
from slime_core.stages import align, tags, write


def test_alignment_methods_listed_default_first():
    assert align.list_alignment_methods() == ["ridge", "lstsq", "procrustes"]


def test_unknown_alignment_method_names_the_known_ones():
    with pytest.raises(SlimeError) as err:
        align.fit_alignment(np.eye(3), np.eye(3), "nope")
    msg = str(err.value)
    assert "\n" not in msg and "'nope'" in msg
    assert all(name in msg for name in align.list_alignment_methods())


def test_toy_alignment_method_is_listed_and_used():
    @align.register_alignment_method("toy")
    def toy(X, Y):
        return align.Alignment(np.eye(X.shape[1], Y.shape[1], dtype=np.float32), "toy", len(X), 0.0)

    try:
        assert "toy" in align.list_alignment_methods()
        fit = align.fit_alignment(np.eye(3), np.eye(3), "toy")
        assert fit.method == "toy" and fit.n_pairs == 3
    finally:
        align.METHODS.remove("toy")
    assert "toy" not in align.list_alignment_methods()


def test_writers_listed_and_unregistered_names_go_to_litellm(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    assert write.list_writers() == ["local", "mbr", "consensus"]
    assert all(write.writer_about(name) for name in write.list_writers())
    assert isinstance(write.create_writer("mbr"), write.MBRWriter)
    llm = write.create_writer("gpt-4o-mini", "tags", mock_response="A dog.")  # the one fallback rule
    assert isinstance(llm, write.LiteLLMWriter) and llm.model == "gpt-4o-mini"
    with pytest.raises(SlimeError) as err:
        write.create_writer("gpt-4o-mini", "neighbours")
    assert "\n" not in str(err.value) and "'mbr' or 'consensus'" in str(err.value)


def test_toy_writer_is_listed_and_created():
    @write.register_writer("toy", "always the same caption")
    class ToyWriter(write.CaptionWriter):
        model, modes = "toy", ("neighbours",)

        def write(self, tags, neighbour_captions=None, weights=None):
            return write.WrittenCaption("A toy.", self.mode, self.model, None, 0.0, 0.0)

    try:
        assert "toy" in write.list_writers() and write.writer_about("toy") == "always the same caption"
        made = write.make_writer("toy")
        assert isinstance(made, ToyWriter) and made.mode == "neighbours" and made.write(["x"]).text == "A toy."
        with pytest.raises(SlimeError, match="'toy'"):  # now offered for mode neighbours too
            write.make_writer("gpt-4o-mini", "neighbours")
    finally:
        write.WRITERS.remove("toy")
    assert "toy" not in write.list_writers()


def test_unknown_tag_backend_names_the_known_ones():
    assert tags.list_parsers() == ["spacy", "stanza"]
    with pytest.raises(SlimeError) as err:
        tags.create_parser("nltk")
    assert str(err.value) == "unknown tag backend 'nltk'; use one of spacy, stanza."


def test_toy_parser_is_listed_and_created():
    @tags.register_parser("toy")
    class ToyParser:
        def __init__(self, word="dog"):
            self.word = word

        def parse(self, texts):
            return [[tags.Token(1, "black", "black", "ADJ", 2, "amod"),
                     tags.Token(2, self.word, self.word, "NOUN", 0, "root")] for _ in texts]

    try:
        assert "toy" in tags.list_parsers()
        parser = tags.make_parser("toy", word="cat")
        assert tags.tags_of_captions(["A black cat."], parser) == {"black cat": 1}
    finally:
        tags.PARSERS.remove("toy")
    assert "toy" not in tags.list_parsers()
