"""SLImE: Semantic Leakage from Image Embeddings.

The layers, top to bottom (README.md has the map): `cli/` and the app are surfaces; `present/` draws; `experiments/`
measures (evaluation, defence curves, the report's audit); `pipeline.Attacker` runs one attack path; `stages/` holds
the paper's stages, one module each; `training/` builds bundles; `infra/` is what every layer may use.

The public API, importable from here (each loads its stage on first use, so `import slime_core` stays fast):

>>> import slime_core
>>> attacker = slime_core.Attacker()  # the default bundle in models/default
>>> spec = slime_core.AttackSpec("lite0", n_align=300, k=5)
>>> leaked = attacker.victim_rows("lite0", [0])  # a victim embedding: lite0's of the pool's first photo
>>> result = attacker.attack(embedding=leaked, spec=spec)
>>> len(result.tags), result.n_align
(5, 300)
>>> "noise" in slime_core.list_defences()
True
>>> defended = slime_core.create_defence("noise", 0.1, seed=0).fit(leaked).transform(leaked)
>>> defended.shape == leaked.shape
True
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {  # name -> the module that defines it
    "Attacker": "slime_core.pipeline",
    "AttackSpec": "slime_core.attack_spec",
    "AttackResult": "slime_core.attack_result",
    "BatchAttack": "slime_core.attack_result",
    "SlimeError": "slime_core.infra.errors",
    "load_bundle": "slime_core.stages.bundle",
    "get_encoder": "slime_core.stages.encoders",
    "encoder_names": "slime_core.stages.encoders",
    "fit_alignment": "slime_core.stages.align",
    "list_alignment_methods": "slime_core.stages.align",
    "create_writer": "slime_core.stages.write",
    "list_writers": "slime_core.stages.write",
    "create_parser": "slime_core.stages.tags",
    "list_parsers": "slime_core.stages.tags",
    "create_defence": "slime_core.stages.defences",
    "list_defences": "slime_core.stages.defences",
    "evaluate": "slime_core.experiments.evaluation",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The API's names, imported when first asked for (PEP 562): torch loads only when an attack needs it."""
    if name not in _API:
        raise AttributeError(f"module 'slime_core' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
