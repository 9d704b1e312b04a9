"""Make ``musicnn_golden.npz``: MTT_musicnn outputs computed with TensorFlow (run once, offline).

Run in a throwaway environment with TensorFlow 2.15, librosa and ``musicnn`` (``--no-deps``):

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.*" "numpy<2" librosa==0.11.0
    /tmp/tfenv/bin/pip install --no-deps musicnn
    /tmp/tfenv/bin/python tests/data/make_musicnn_golden.py

The input is 3.2 s of a seeded test signal stored as int16; the front end is
``musicnn.extractor.batch_data`` applied to that array, with patches every ``HOP`` frames.
"""

from __future__ import annotations

import os

import librosa
import numpy as np
import tensorflow as tf
from musicnn import configuration as config
from musicnn import models

HOP = 7
LAYERS = ("penultimate", "logits", "max_pool", "mean_pool")


def signal() -> np.ndarray:
    """3.2 s at 16 kHz: two chords, a decaying click train and noise, as int16."""
    rng = np.random.default_rng(0)
    t = np.arange(51200) / 16000
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6, 880, 1760)) / 5
    clicks = np.exp(-((t % 0.25) * 40)) * rng.standard_normal(t.size)
    wave = 0.4 * tone + 0.2 * clicks + 0.02 * rng.standard_normal(t.size)
    return np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)


def main() -> None:
    pcm = signal()
    audio = pcm.astype(np.float32) / 32768
    rep = librosa.feature.melspectrogram(y=audio, sr=config.SR, hop_length=config.FFT_HOP,
                                         n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
    rep = np.log10(10000 * rep.astype(np.float16) + 1)
    n_frames = 187
    batch = np.stack([rep[s: s + n_frames] for s in range(0, rep.shape[0] - n_frames + 1, HOP)])
    tf.compat.v1.disable_eager_execution()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        out = models.define_model(x, is_training, "MTT_musicnn", 50)
    logits, _, _, _, _, _, mean_pool, max_pool, penultimate = out
    sess = tf.compat.v1.Session()
    sess.run(tf.compat.v1.global_variables_initializer())
    tf.compat.v1.train.Saver().restore(sess, os.path.dirname(models.__file__) + "/MTT_musicnn/")
    values = sess.run([penultimate, logits, max_pool, mean_pool],
                      feed_dict={x: batch, is_training: False})
    np.savez_compressed(os.path.join(os.path.dirname(__file__), "musicnn_golden.npz"),
                        pcm=pcm, hop=HOP, tensorflow=tf.__version__, librosa=librosa.__version__,
                        **dict(zip(LAYERS, values, strict=True)))
    print({k: v.shape for k, v in zip(LAYERS, values, strict=True)})


if __name__ == "__main__":
    main()
