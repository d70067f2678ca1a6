"""The defences' registry: transforms an embedding owner applies to its image embeddings before they leave it.

One file per defence in this package: its `DefenceSpec` (what the strength means, what it protects and what not,
its default strengths, how it works) right beside one small `Defence` subclass registered by `register_defence`.
Everything else -- `slime defend` and `slime report`, the Defences page, the report, the curves -- asks the registry:

    list_defences()                      # names, in registration order
    defence_spec("noise")                # its DefenceSpec
    create_defence("noise", 0.1, seed=3).fit(X).transform(X)

so adding a defence is one new file here (imported below). Every defence has one numeric `strength` (its
meaning depends on the defence), a secret `seed` (the owner's key, or the noise stream) and, for the
data-dependent ones, a `fit` on the owner's own embeddings: the owner defends everything it releases (public
pool and private images alike) with the same key.

Inputs are float32 (n, d) embeddings, L2-normalised as every encoder here returns them. Outputs are float32
(n, d_out) with d_out = d except where the strength is the released dimension d' (`pca`, `projection`).
Outputs are NOT re-normalised (post-processing cannot weaken a DP guarantee, and cosine users normalise anyway).

The threat model the curves measure (see `experiments/defence_curves.py`): the attacker holds N leaked
(defended victim embedding, public image) pairs and refits its alignment on the DEFENDED pairs. None of these
stops the attack and keeps the embedding useful at once: the curves show where each sits.
"""

from __future__ import annotations

from slime_core.stages.defences.base import Defence, DefenceSpec, check_input
from slime_core.stages.defences.registry import (
    apply_defence,
    create_defence,
    defence_class,
    defence_options,
    defence_spec,
    list_defences,
    parse_strengths,
    register_defence,
    unregister_defence,
)

__all__ = ["Defence", "DefenceSpec", "apply_defence", "check_input", "create_defence", "defence_class",
           "defence_options", "defence_spec", "list_defences", "parse_strengths", "register_defence",
           "unregister_defence"]

# Registration happens here, on import of the package; this order is the registry's order (isort must not sort it).
# isort: off
from slime_core.stages.defences import (  # noqa: E402,F401
    noise, gaussian, laplace, rotation, shuffle, pca, projection, quantise,
)
# isort: on
