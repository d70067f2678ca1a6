"""Experiments built on the paper's stages: each runs the attack over many images and measures it.

batch            the batch attack they all share: align, measure the cosine, retrieve top-k tags
evaluation       `slime eval`: leakage per (N, k) beside the prior baselines, captions optional
defence_curves   `slime defend`: leakage against utility per defence and strength (the adaptive attacker)
knee             where a defence curve bends, and where it stops the measurable leak
audit            `slime report`: everything the audit report shows, as one dict
single_image     one attacked image's scores beside its priors (the app's attack page)
explore          the app's alignment explorer, per-tag leakage, evaluation runs merged over N

Experiments import stages (slime_core.*) and each other, never presentation (slime_core.present) or a surface.
"""
