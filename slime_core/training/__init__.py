"""Training the attacker: `build` (a bundle from a dataset), `build_scale` (large vocabularies,
accelerate), `build_lowfi` (the offline generator's latent regressor)."""
