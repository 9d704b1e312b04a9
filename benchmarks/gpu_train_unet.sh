#!/usr/bin/env bash
# Train the embedded noise predictor on a GPU from a latent pack, for at most 10 minutes.
#
# Usage, from the repository root on the GPU machine:
#
#   benchmarks/gpu_train_unet.sh PACK RUNS [PARTS] [MINUTES]
#
#   PACK     a latent pack: python -m diffmusic.train pack --data data --runs runs \
#                --init src/diffmusic/assets/embedded --out packs/pack.safetensors --megabytes 30
#   RUNS     runs root to train in: RUNS/unet continues from its checkpoint when it has one,
#            else starts from the shipped model (src/diffmusic/assets/embedded)
#   PARTS    optional folder for the way back: the checkpoint (EMA and raw weights, data RNG,
#            state, logs, the frozen VAE; not the 58 MB optimizer state) as a tar split into
#            15 MiB parts unet.tar.part-aa, -ab, ... (about 58 MiB in 4 parts)
#   MINUTES  training budget (default 8); the trainer is sent SIGTERM 90 s after it, which
#            ends the step and writes a checkpoint, and killed 60 s later
#
# Environment: DEVICE (cuda), PRECISION (bfloat16 autocast of the UNet's forward pass), BATCH
# (64), LR (0.001), SAVE_MINUTES (1), MAX_STEPS (0: only the budget), THREADS (4).
#
# The lent H200's Python (3.12, torch 2.11) lacks diffusers, soundfile, cffi, pycparser, julius,
# soxr and importlib_metadata; they are installed from the wheels in .whl/ when that folder
# exists. Prepare it here once (8 MB; .whl/ and packs/ listed in .git/info/exclude):
#
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       diffusers==0.42.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 julius==0.2.8 \
#       soxr==1.1.0 importlib_metadata==10.2.0
#
# What travels to the machine is at most 64 MiB: the tracked tree (25 MB), .whl/ (8 MB) and
# the pack, so a pack of --megabytes 30 fits, 60 does not. A device call, for example:
#
#   run(command="benchmarks/gpu_train_unet.sh packs/pack30.safetensors /tmp/runs $OUT 8",
#       carry=[".whl", "packs"], timeout_s=600)
#
# What comes back from $OUT is at most 8 files of 16 MiB, 64 MiB in all: hence the parts.
#
# Back on the CPU machine (WHERE: the folder the parts were fetched to):
#
#   mkdir -p runs_gpu && cat WHERE/unet.tar.part-* | tar -x -C runs_gpu
#   python -m diffmusic.train unet --data data --runs runs_gpu --threads 1 --minutes 60
#
# resumes that run from audio crops (a fresh optimizer, its learning rate warmed up again), and
# `python -m diffmusic.train export --runs runs_gpu --out DIR` exports it.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d'
    exit 2
fi
pack=$1
runs=$2
parts=${3:-}
minutes=${4:-8}

source "$(dirname "$0")/gpu_env.sh"

limit=$(python3 -c "print(int(float('$minutes') * 60 + 90))")
status=0
timeout -s TERM -k 60 "$limit" python3 -m diffmusic.train unet --pack "$pack" --runs "$runs" \
    --init src/diffmusic/assets/embedded --device "${DEVICE:-cuda}" \
    --precision "${PRECISION:-bfloat16}" --batch "${BATCH:-64}" --lr "${LR:-0.001}" \
    --minutes "$minutes" --save-minutes "${SAVE_MINUTES:-1}" --max-steps "${MAX_STEPS:-0}" \
    --threads "${THREADS:-4}" || status=$?
echo "trainer exit status $status; checkpoint: $(cat "$runs/unet/checkpoint/state.json" | tr -d '\n ')"

if [ -n "$parts" ]; then
    mkdir -p "$parts"
    files=()
    for f in checkpoint/unet.safetensors checkpoint/unet_ema.safetensors \
        checkpoint/rng.safetensors checkpoint/state.json vae.safetensors latent.json log.csv \
        valid.csv; do
        if [ -e "$runs/unet/$f" ]; then files+=("unet/$f"); fi
    done
    tar -C "$runs" -cf - "${files[@]}" | split -b 15M - "$parts/unet.tar.part-"
    ls -l "$parts"
fi
exit "$status"
