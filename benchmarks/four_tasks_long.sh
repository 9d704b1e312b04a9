#!/bin/bash
# 3-minute 44.1 kHz stereo runs of the four issue-18 tasks through the CLI (run from an empty
# folder: it writes clean.wav, TASK_in.wav, TASK_out.wav/json there; needs /work/val/songs, four
# 90 s validation songs at 16 kHz, and the repository's .venv).
set -e
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=$REPO/.venv/bin/python
$PY - <<'PYEOF'
import soundfile as sf, torch, glob
from diffmusic.dsp import resample
from diffmusic.operators import Declipping, Denoising, Dereverberation, SuperResolution
songs = sorted(glob.glob('/work/val/songs/*.wav'))
a = torch.cat([torch.from_numpy(sf.read(f, dtype='float32')[0]) for f in songs[0:2]])
b = torch.cat([torch.from_numpy(sf.read(f, dtype='float32')[0]) for f in songs[2:4]])
x = resample(torch.stack([0.7 * a + 0.3 * b, 0.3 * a + 0.7 * b]), 16000, 44100)
x = 0.5 * x / x.abs().max()
n = x.shape[-1]
sf.write('clean.wav', x.T.numpy(), 44100, subtype='FLOAT')
g = torch.Generator().manual_seed(0)
damaged = {
    'declipping': Declipping(44100, n, input_sdr=7.0).degrade(x),
    'denoising': Denoising(44100, n, snr=10.0).degrade(x, g),
    'super_resolution': SuperResolution(44100, n, cutoff=4000.0).degrade(x),
    'dereverberation': Dereverberation(44100, n, room=0.5).degrade(x),
}
for task, y in damaged.items():
    if task == 'dereverberation':
        y = 0.9 * y / y.abs().max()
    sf.write(f'{task}_in.wav', y.T.numpy(), 44100, subtype='PCM_16' if task == 'declipping' else 'FLOAT')
print('written', n / 44100, 's')
PYEOF
for task in declipping denoising super_resolution dereverberation; do
  rm -f ${task}_out.wav ${task}_out.json
  /usr/bin/time -f "$task wall %e s, peak RSS %M KB" $REPO/.venv/bin/diffmusic restore ${task}_in.wav --task $task -o ${task}_out.wav --quiet
done
$PY - <<'PYEOF'
import soundfile as sf, torch, json
from diffmusic.metrics import si_sdr, lsd
from diffmusic.dsp import resample
x = torch.from_numpy(sf.read('clean.wav', dtype='float32')[0].T.copy())
for task in ('declipping', 'denoising', 'super_resolution', 'dereverberation'):
    y = torch.from_numpy(sf.read(f'{task}_in.wav', dtype='float32')[0].T.copy())
    out, rate = sf.read(f'{task}_out.wav', dtype='float32')
    out = torch.from_numpy(out.T.copy())
    rec = json.loads(open(f'{task}_out.json').read())
    def score(w):  # at 16 kHz, per channel
        a, b = resample(w, 44100, 16000), resample(x, 44100, 16000)
        return [f'{float(lsd(a[c], b[c])):.3f}/{float(si_sdr(a[c], b[c])):.2f}' for c in range(2)]
    print(task, rate, tuple(out.shape), 'input', score(y), 'restored', score(out), 'estimates', rec.get('estimates'))
PYEOF
