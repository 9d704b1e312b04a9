# Sourced by the benchmarks/gpu_*.sh scripts on the lent GPU machine: puts src/ on the path and,
# when a .whl/ folder travelled with the tree, installs the wheels its Python lacks (see
# gpu_train_unet.sh for how to prepare .whl/ here), then prints the GPU.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import diffusers, soundfile, julius, soxr" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/diffmusic-site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/diffmusic-site"
fi
if [ "${DEVICE:-cuda}" != cpu ]; then
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
fi
