"""What the pages share, in one import: `from app_pages import common`.

Each job lives in its own module; this is only the surface the pages call:
  _resources   the heavy objects, built once per server process (attacker, tag parser, scorer, gallery, embeddings)
  _writers     caption writers, which ones are offered here, and the caption prior
  _victims     which victim encoders this server can offer (the paper encoders probed once per server)
  _evaluation  the batch pages' evaluation and defence set-up
  _show        errors shown literally, and a step timer
  _gate        the output gate: every text Streamlit shows is masked (configured keys, any common encoding)
"""

from __future__ import annotations

from app_pages import _gate
from app_pages._evaluation import EVAL_SPLIT, defence_setup, eval_samples, run_evaluation
from app_pages._resources import (
    attacker_or_stop,
    embed_path,
    embed_upload,
    gallery,
    get_attacker,
    get_parser,
    get_scorer,
    pool_image,
    public_captions,
    reference_tags,
)
from app_pages._show import plain, show_error, timed
from app_pages._victims import (
    encoder_problem,
    finish_victim_options,
    unavailable_expander,
    victim_options,
    victim_options_fast,
)
from app_pages._writers import NO_PUBLIC_CAPTIONS, get_writer, mean_caption, writer_options

__all__ = ["EVAL_SPLIT", "NO_PUBLIC_CAPTIONS", "attacker_or_stop", "defence_setup", "embed_path", "embed_upload",
           "encoder_problem", "eval_samples", "finish_victim_options", "gallery", "get_attacker", "get_parser",
           "get_scorer", "get_writer", "mean_caption", "plain", "pool_image", "public_captions", "reference_tags",
           "run_evaluation", "show_error", "timed", "unavailable_expander", "victim_options", "victim_options_fast",
           "writer_options"]

_gate.install()  # everything a page shows passes through errors.mask_output (keys, st.secrets)
