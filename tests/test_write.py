import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from slime_core.infra import loaded_models
from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages import write
from slime_core.stages.write import check_final_parts, final_caption_prompt, final_prompt_from

TAGS = ["dog", "grass", "running", "ball"]
NEIGHBOURS = ["A cat sleeps on a red sofa.", "A dog runs on the grass.", "A brown dog runs across the grass.",
              "Two dogs play on the grass."]


def test_prompts_fill_tags_examples_and_neighbours():
    msgs = write.CaptionWriter("tags").messages(TAGS)
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 2 + ["user"]
    assert "dog, grass, running, ball" in msgs[-1]["content"] and "{" not in msgs[-1]["content"]
    msgs = write.CaptionWriter("tags+neighbours").messages(TAGS, NEIGHBOURS)
    assert "- A cat sleeps on a red sofa." in msgs[-1]["content"] and "dog, grass" in msgs[-1]["content"]


@pytest.mark.parametrize("raw, clean", [
    ("A dog runs. It is happy.", "A dog runs."),
    ('Caption: "A dog runs on the grass."\nMore text', "A dog runs on the grass."),
    ("\n**A red bus**", "A red bus"),
])
def test_clean_caption(raw, clean):
    assert write.clean_caption(raw) == clean


def test_make_writer_specs_and_modes():
    assert write.make_writer("none", "tags") is None
    assert isinstance(write.make_writer("consensus"), write.ConsensusWriter)
    with pytest.raises(SlimeError, match="modes"):
        write.make_writer("consensus", "tags")
    with pytest.raises(SlimeError, match="consensus"):
        write.make_writer("gpt-4o-mini", "neighbours")
    with pytest.raises(SlimeError, match="caption mode"):
        write.make_writer("local", "poem")


def test_consensus_picks_the_caption_the_others_agree_with():
    out = write.ConsensusWriter().write(TAGS, NEIGHBOURS)
    assert out.text == "A dog runs on the grass." and out.mode == "neighbours" and out.prompt is None
    assert write.ConsensusWriter().write([], ["Only one."]).text == "Only one."
    with pytest.raises(SlimeError, match="captions"):
        write.ConsensusWriter().write(TAGS, [])


def test_rouge_l_matrix_is_the_pairwise_rouge_l():
    from slime_core.stages.caption_metrics import rouge_l, rouge_l_matrix

    M = rouge_l_matrix(NEIGHBOURS)
    assert M.shape == (4, 4) and (M == M.T).all() and (np.diag(M) == 1).all()
    for i, a in enumerate(NEIGHBOURS):
        for j, b in enumerate(NEIGHBOURS):
            if i != j:
                assert M[i, j] == pytest.approx(rouge_l(a, b))


def test_mbr_choice_weighs_candidates_by_similarity():
    U = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    # Equal weights: 1 gains 0.9 + 0.2 from the others, 0 only 0.9 + 0.1.
    assert write.mbr_choice(U, np.zeros(3), 1.0) == 1
    # A sharp temperature on a far nearer third candidate: only its support counts, and it favours candidate 1.
    assert write.mbr_choice(U, np.array([0.0, 0.0, 1.0]), 0.01) == 1
    # Candidate 0 alone near: its own weight never counts for itself, so the one it supports most (1) wins.
    assert write.mbr_choice(U, np.array([1.0, 0.0, 0.0]), 0.01) == 1
    assert write.mbr_choice(np.eye(2), np.zeros(2), 1.0) == 0  # all gains equal: the nearer (earlier) one


def test_mbr_writer_picks_the_typical_caption_of_the_near_images():
    w = write.make_writer("mbr")
    assert isinstance(w, write.MBRWriter) and w.all_captions and w.mode == "neighbours"
    out = w.write([], NEIGHBOURS, [0.9, 0.8, 0.8, 0.7])
    assert out.text == "A dog runs on the grass." and out.prompt is None and out.model == "mbr-rougeL"
    # Three captions of one near cat photo, four of farther dog photos: uniform weights follow the dogs' majority,
    # a sharp temperature the near photo (its captions support each other; none votes for itself).
    cats = ["A cat sleeps on a red sofa.", "A cat sleeps on the sofa.", "A grey cat sleeps on a sofa."]
    caps, sims = cats + NEIGHBOURS[1:] + ["A dog runs on the green grass."], [0.9] * 3 + [0.5] * 4
    assert "cat" in write.MBRWriter(temperature=0.02).write([], caps, sims).text
    assert "dog" in write.MBRWriter(temperature=100.0).write([], caps, sims).text
    with pytest.raises(SlimeError, match="captions"):
        w.write(TAGS, [], [])
    with pytest.raises(SlimeError, match="temperature"):
        write.MBRWriter(temperature=0)
    with pytest.raises(SlimeError, match="mbr"):
        write.make_writer("gpt-4o-mini", "neighbours")


def test_litellm_mock_response(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    w = write.make_writer("gpt-4o-mini", "tags", mock_response="A brown dog runs on the grass. Extra words.")
    out = w.write(TAGS)
    assert out.text == "A brown dog runs on the grass."
    assert out.model == "gpt-4o-mini" and "dog, grass" in out.prompt and out.seconds >= 0
    assert out.cost_usd is None or out.cost_usd >= 0


def test_litellm_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingModelError, match="ANTHROPIC_API_KEY"):
        write.LiteLLMWriter("anthropic/claude-3-5-haiku-latest")


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions with the next item of server.plan: ok, 429, 500, slow or bad."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        kind = self.server.plan.pop(0)
        code, body = 200, json.dumps({
            "id": "x", "object": "chat.completion", "created": 1, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "A dog runs on the grass."}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}}).encode()
        if kind in ("429", "500"):
            code, body = int(kind), json.dumps({"error": {"message": f"fake {kind}", "type": "x"}}).encode()
        elif kind == "bad":
            body = b"{not json"
        elif kind == "slow":
            time.sleep(2)
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("plan, requests, error", [
    (["ok"], 1, None),
    (["429", "ok"], 2, None),  # a rate limit is retried
    (["500", "500"], 2, "InternalServerError"),  # retried, then a clear error
    (["bad", "bad"], 2, "failed after 2 attempt"),  # malformed JSON: retried, then a clear error
    (["slow"], 1, "Timeout"),
])
def test_litellm_against_a_local_openai_server(server, monkeypatch, plan, requests, error):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    server.plan, server.requests = list(plan), 0
    w = write.make_writer("openai/fake", "tags", api_base=f"http://127.0.0.1:{server.server_port}/v1",
                          timeout=0.5, retries=len(plan) - 1, backoff=0.01)
    if error:
        with pytest.raises(SlimeError, match=error):
            w.write(TAGS)
    else:
        out = w.write(TAGS)
        assert out.text == "A dog runs on the grass." and out.cost_usd is None
    assert server.requests == requests


def test_missing_local_model_names_the_install_command(monkeypatch):
    monkeypatch.setattr(write.importlib.util, "find_spec", lambda name: None)
    loaded_models.release("caption_llm")
    with pytest.raises(MissingModelError, match=re.escape(write.LOCAL_INSTALL)):
        write.LocalWriter()
    assert ("caption_llm", write.LOCAL_GGUF) not in loaded_models.in_memory()  # a failed load stores nothing


@pytest.mark.slow
def test_local_writer_writes_an_english_sentence():
    out = write.make_writer("local", "tags").write(TAGS)
    words = re.findall(r"[a-z]+", out.text.lower())
    assert out.text and out.model == write.LOCAL_GGUF and out.cost_usd == 0.0
    assert set(words) & {"dog", "grass", "running", "runs", "ball"} or len(words) > 3, out.text


# ---- the final caption of the paper's ablation

def test_final_caption_prompt_combinations():
    rel, scene = [("man", "on", "bench"), ("lamp", "hanging_over", "table")], "park"
    p = final_caption_prompt(relations=rel, scene=scene)
    assert "Scene: park" in p and "man on bench" in p and "lamp hanging over table" in p and "Objects" not in p
    full = final_caption_prompt(objects=["man", "bench"], relations=rel, scene=scene)
    assert "Objects: man, bench" in full and full.endswith("Caption:")
    with pytest.raises(SlimeError):
        final_caption_prompt()


def test_final_prompt_from_the_chosen_parts_of_a_graph():
    graph = {"objects": ["dog", "ball"], "attributes": {}, "relations": [["dog", "next_to", "ball"]], "scene": None,
             "raw_relations": [["dog", "chase", "ball"]]}
    assert check_final_parts(" objects, relations ") == ("objects", "relations")
    with pytest.raises(SlimeError, match=r"not \['colour'\]"):
        check_final_parts(["objects", "colour"])
    p = final_prompt_from(graph, ("relations",))
    assert "dog next to ball; dog chase ball" in p and "Objects" not in p  # the tags' own verbs count too
    assert final_prompt_from(graph, ("scene",)) is None  # nothing to write from: no prompt, no model call
