#!/usr/bin/env bash
# Creates .venv in the project root and installs the pinned requirements.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# torch first, so that nothing below pulls another build of it
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -r requirements.txt
# mostlyai-engine pins torchvision/torchaudio, whose wheels do not load beside this torch build and break
# `import transformers` (hence the engine). The tabular engine does not use them.
.venv/bin/pip uninstall --quiet --yes torchvision torchaudio
.venv/bin/python -c "from mostlyai.sdk import MostlyAI; import mostlyai.qa, numba" && echo "set-up complete: .venv"
