"""What this machine can offer the app: the victim encoders it can load, the low-fidelity image generators it can
run for the attacker, the chat-model keys it holds."""

from __future__ import annotations

from typing import Sequence

from slime_core.infra import settings
from slime_core.stages.encoders import encoder_cfg, encoder_names
from slime_core.stages.lowfi import LOWFI_METHODS


def victim_choices(pool_encoders: Sequence[str], probe=None) -> tuple[list[str], list[dict]]:
    """(usable victim encoders, [{name, about, reason}] for the registry's encoders that cannot be used here).

    Usable: the bundle holds its embeddings of the public pool (the offline encoders), or `probe(name)` -- which
    tries to load the encoder and checks the pool images are there to embed N of them -- returns None. An API
    encoder without its key is not probed. Otherwise the reason is the probe's (or the missing key's) message."""
    usable, unavailable = [], []
    for name in encoder_names():
        cfg = encoder_cfg(name)
        if cfg.kind == "sentence_transformers":
            continue  # text-only encoders are no victims
        if name in pool_encoders:
            usable.append(name)
            continue
        if cfg.env and not settings.secret(cfg.env):
            reason = f"needs the API key {cfg.env} in the environment (or st.secrets) and network access"
        elif probe is not None:
            reason = probe(name)
            if reason is None:
                usable.append(name)
                continue
        else:
            reason = f"needs the {cfg.model} weights ({cfg.pretrained or cfg.model}) on disk"
        unavailable.append({"encoder": name, "dim": cfg.dim, "about": cfg.about, "reason": reason})
    return usable, unavailable


LOWFI_ABOUT = {"offline": "TAEF2 decoder of a latent regressed from the aligned embedding (offline, one forward pass)",
               "kandinsky": "Kandinsky 2.2 decoder, the paper's (a ViT-bigG-14 attacker and its weights; GPU advised)"}


def lowfi_choices(probe) -> tuple[list[str], list[dict]]:
    """(usable low-fidelity methods, [{method, about, reason}] for those that cannot run here): `probe(method)`
    returns None when the method's generator loads for this attacker, else why not (its loader's message)."""
    usable, unavailable = [], []
    for method in LOWFI_METHODS:
        reason = probe(method)
        if reason is None:
            usable.append(method)
        else:
            unavailable.append({"method": method, "about": LOWFI_ABOUT.get(method, ""), "reason": reason})
    return usable, unavailable


def any_llm_key() -> list[str]:
    """Names (never values) of the chat-model API keys present in the environment."""
    names = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY", "GROQ_API_KEY",
             "TOGETHER_API_KEY", "OPENROUTER_API_KEY")
    return [n for n in names if settings.secret(n)]
