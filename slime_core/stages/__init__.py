"""The paper's stages, one module each: data, tags, encoders/, align, retrieve, rank, write, lowfi
(generate, taef2), detect, objects, infer, metrics, caption_metrics, defences/ (defend, dp), bundle,
uploads. They import only each other and infra/; `slime_core.pipeline` chains them."""
