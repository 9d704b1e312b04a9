#!/usr/bin/env bash
# Seconds per guided step and peak GPU memory of full-size Stable Audio Open (random weights:
# the published DiT and Oobleck VAE, see full_size_priors.py) in float16 and bfloat16, for a
# 10 s and a 47 s stereo window at 44.1 kHz, DiffMusic and DPS; under 5 minutes on one GPU.
#
# Usage, from the repository root on the GPU machine (prepare .whl/ as gpu_train_unet.sh says;
# Stable Audio's T5 also needs transformers: where the machine's Python lacks it, add
# transformers==5.25.0 tokenizers==0.23.3 huggingface_hub==2.4.0 regex safetensors to that
# download, whose total must stay under the 64 MiB that travels):
#
#   run(command="benchmarks/gpu_stable_audio.sh", carry=[".whl"], timeout_s=360)
#
# Environment: DTYPES ("float16 bfloat16"), WINDOWS ("10 47": window lengths in seconds), STEPS
# (5: the median of steps 2..STEPS is reported), MINUTES_EACH (2: a time limit per precision),
# DEVICE (cuda), PYTHON (python3).
set -euo pipefail
source "$(dirname "$0")/gpu_env.sh"

status=0
for dtype in ${DTYPES:-float16 bfloat16}; do
    # shellcheck disable=SC2086  # WINDOWS is a list of lengths
    timeout -k 10 "$(( ${MINUTES_EACH:-2} * 60 ))" "${PYTHON:-python3}" benchmarks/full_size_priors.py \
        --models stable-audio --device "${DEVICE:-cuda}" --dtype "$dtype" \
        --seconds ${WINDOWS:-10 47} --steps "${STEPS:-5}" --samplers diffmusic dps || status=$?
done
exit "$status"
