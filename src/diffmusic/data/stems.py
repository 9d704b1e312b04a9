"""Multi-part scores rendered with FluidSynth into MUSDB-style stems with exact ground truth.

Sources: works of the ``music21`` corpus (Bach chorales, Palestrina, Trecento, the Beethoven,
Haydn and Mozart string quartets), converted part by part to MIDI with music21, and the General
MIDI files of the Debian package ``planetblupi-music-midi``. Parts are assigned to the roles
``vocals`` (top voice / lead line, voice-like programs), ``bass`` (lowest voice or GM bass
programs), ``drums`` (GM percussion) and ``other``; programs are drawn within each role from a
seeded generator. Each role is rendered separately at 16 kHz mono, the mixture is the exact
float32 sum of the stems, and one gain per song brings its peak to about -1 dBFS.

Output: ``DATA/stems/{train,valid}/<song>/{mixture,vocals,drums,bass,other}.wav`` (float32).
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from diffmusic.data.music import ensure_tools, fetch_package, sanitize, split_groups, stable_hash
from diffmusic.names import SAMPLE_RATE

log = logging.getLogger(__name__)

MAX_SECONDS = 60.0
PEAK_DBFS = -1.0
SEED = 20240611
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MIDI_PACKAGE = "planetblupi-music-midi"
ROLES = ("vocals", "drums", "bass", "other")

#: music21 corpus composer -> (file-name pattern, number of works drawn).
CORPUS_QUOTAS: dict[str, tuple[str, int]] = {
    "bach": (r"^bwv\d+\.\d+", 60),  # the four-part chorales
    "palestrina": (r".", 40),
    "trecento": (r".", 20),
    "beethoven": (r".", 8),
    "haydn": (r".", 9),
    "mozart": (r".", 13),
}

#: Windows of ``MAX_SECONDS`` drawn from each (long) General MIDI file, each a new song.
MIDI_VARIANTS = 6

#: General MIDI programs per role (drums: FluidR3 percussion kits).
PROGRAMS: dict[str, tuple[int, ...]] = {
    "vocals": (52, 52, 53, 53, 54, 85, 68, 73),
    "bass": (32, 33, 34, 35, 36, 37, 38, 39, 43),
    "drums": (0, 8, 16, 24, 25, 32, 40, 48),
    "other": (0, 1, 2, 4, 6, 11, 16, 19, 21, 24, 25, 26, 40, 41, 42, 46, 48, 49, 56, 57, 60, 61,
              64, 65, 66, 70, 71, 72, 80, 81, 88, 89, 91),
}


@dataclass(frozen=True)
class Song:
    """One song to render.

    Attributes:
        name: Output folder name.
        source: ``"corpus"`` (music21 work) or ``"midi"`` (General MIDI file).
        path: The score or MIDI file.
        group: Split key (all windows of one MIDI file share a split).
        collection: Corpus composer or MIDI package, for the validation coverage.
        start_fraction: Where the rendered window starts, as a fraction of the piece.
    """

    name: str
    source: str
    path: Path
    group: str
    collection: str
    start_fraction: float = 0.0


def corpus_songs(quotas: dict[str, tuple[str, int]], total: int | None, seed: int) -> list[Song]:
    """Draw works from the music21 corpus with a seeded generator.

    Args:
        quotas: Composer -> (file-name pattern, count).
        total: Scale the counts to about this many works (None: as given).
        seed: Seed of the draw.
    """
    from music21 import common, corpus

    scale = 1.0 if total is None else total / sum(n for _, n in quotas.values())
    rng = np.random.default_rng(seed)
    songs: list[Song] = []
    for composer, (pattern, count) in quotas.items():
        base = Path(common.getCorpusFilePath()) / composer
        paths = sorted(
            Path(p) for p in corpus.getComposer(composer) if re.search(pattern, Path(p).name)
        )
        chosen = rng.choice(len(paths), min(len(paths), round(count * scale)), replace=False)
        for index in sorted(chosen):
            path = paths[index]
            name = sanitize(f"{composer}__{path.relative_to(base).with_suffix('')}")
            songs.append(Song(name, "corpus", path, name, composer))
    return songs


def midi_songs(midi_dir: Path, variants: int = MIDI_VARIANTS) -> list[Song]:
    """Songs from the windows of each General MIDI file in ``midi_dir``."""
    songs = []
    for path in sorted(midi_dir.rglob("*.mid")):
        group = sanitize(f"blupi__{path.stem}")
        songs += [
            Song(f"{group}_w{k}", "midi", path, group, MIDI_PACKAGE, k / variants)
            for k in range(variants)
        ]
    return songs


def load_midi(song: Song):  # -> pretty_midi.PrettyMIDI
    """Load a song as MIDI, converting a corpus score part by part with music21."""
    import pretty_midi
    from music21 import converter

    pretty_midi.pretty_midi.MAX_TICK = 1e10  # long movements at music21's resolution
    if song.source == "midi":
        return pretty_midi.PrettyMIDI(str(song.path))
    with tempfile.TemporaryDirectory() as tmp:
        midi_path = Path(tmp) / "score.mid"
        converter.parse(song.path).write("midi", fp=midi_path)
        return pretty_midi.PrettyMIDI(str(midi_path))


def crop(instruments: list, start: float, stop: float) -> list:
    """Keep the notes starting in ``[start, stop)``, clipped and shifted to start at 0."""
    for inst in instruments:
        inst.notes = [n for n in inst.notes if start <= n.start < stop]
        for note in inst.notes:
            note.start, note.end = note.start - start, min(note.end, stop) - start
        inst.pitch_bends = [b for b in inst.pitch_bends if start <= b.time < stop]
        inst.control_changes = [c for c in inst.control_changes if start <= c.time < stop]
        for event in (*inst.pitch_bends, *inst.control_changes):
            event.time -= start
    return [inst for inst in instruments if inst.notes]


def window(pm, start_fraction: float, seconds: float = MAX_SECONDS) -> list:
    """The instruments of ``pm`` cropped to a window of ``seconds`` from its first note.

    The window starts at ``start_fraction`` of the piece (but not later than ``seconds``
    before its end) and is moved to the next note onset.
    """
    instruments = [inst for inst in pm.instruments if inst.notes]
    onsets = np.sort([n.start for inst in instruments for n in inst.notes])
    if not len(onsets):
        return []
    first, last = onsets[0], onsets[-1]
    wanted = first + start_fraction * max(0.0, last - first - seconds)
    start = float(onsets[np.searchsorted(onsets, wanted)])
    return crop(instruments, start, start + seconds)


def assign_roles(instruments: list, from_score: bool) -> dict[str, list]:
    """Map instruments to roles.

    Drums are the percussion instruments. For scores, the highest voice is ``vocals`` and the
    lowest ``bass``. For General MIDI, ``bass`` are the GM bass programs (32-39) and
    ``vocals`` the highest of the busier melodic instruments (at least a fifth of the notes of
    the busiest). Everything else is ``other``.
    """
    roles: dict[str, list] = {role: [] for role in ROLES}
    roles["drums"] = [i for i in instruments if i.is_drum]
    melodic = sorted((i for i in instruments if not i.is_drum),
                     key=lambda i: np.mean([n.pitch for n in i.notes]))
    if from_score:
        bass = melodic[:1] if len(melodic) > 1 else []
    else:
        bass = [i for i in melodic if 32 <= i.program <= 39]
    rest = [i for i in melodic if i not in bass]
    busiest = max((len(i.notes) for i in rest), default=0)
    leads = [i for i in rest if len(i.notes) * 5 >= busiest]
    roles["bass"] = bass
    roles["vocals"] = leads[-1:]
    roles["other"] = [i for i in rest if i not in roles["vocals"]]
    return roles


@functools.cache
def synth() -> tuple:
    """The worker process's FluidSynth instance and soundfont id (created on first use)."""
    import fluidsynth

    instance = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
    return instance, instance.sfload(str(SOUNDFONT))


def render(instruments: list) -> np.ndarray:
    """Render instruments one by one and sum them (float64, FluidSynth's int16 scale)."""
    fs, sfid = synth()
    waves = []
    for inst in instruments:
        waves.append(inst.fluidsynth(synthesizer=fs, sfid=sfid))
        fs.system_reset()
        fs.get_samples(3 * SAMPLE_RATE)  # flush reverb and release tails
    return pad_sum(waves)


def pad_sum(waves: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Sum arrays after zero-padding (or truncating) them to a common length."""
    length = max((len(w) for w in waves), default=0) if length is None else length
    out = np.zeros(length)
    for wave in waves:
        out[: min(len(wave), length)] += wave[:length]
    return out


def finalize(stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pad stems to one length (at most ``MAX_SECONDS``), normalise, add the mixture.

    One gain for the whole song brings its largest peak (mixture or stem) to
    :data:`PEAK_DBFS`; the mixture is the float32 sum of the float32 stems in
    :data:`ROLES` order.
    """
    length = min(max(len(w) for w in stems.values()), int(MAX_SECONDS * SAMPLE_RATE))
    padded = {role: pad_sum([wave], length) for role, wave in stems.items()}
    peak = max(
        np.abs(pad_sum(list(padded.values()))).max(), *(np.abs(w).max() for w in padded.values())
    )
    gain = 10 ** (PEAK_DBFS / 20) / max(peak, 1e-12)
    out = {role: (wave * gain).astype(np.float32) for role, wave in padded.items()}
    mixture = np.zeros(length, dtype=np.float32)
    for role in ROLES:
        if role in out:
            mixture += out[role]
    return {"mixture": mixture, **out}


def render_song(song: Song, target: Path, seed: int = SEED) -> Path | None:
    """Render one song into ``target`` (atomically; skipped if it exists).

    Returns:
        ``target``, or None when the song has no notes. Loading errors propagate.
    """
    if (target / "mixture.wav").exists():
        return target
    pm = load_midi(song)
    roles = assign_roles(window(pm, song.start_fraction), song.source == "corpus")
    rng = np.random.default_rng([seed, stable_hash(song.name) % 2**32])
    for role, instruments in roles.items():
        for inst in instruments:  # a program drawn from the role's list
            inst.program = int(rng.choice(PROGRAMS[role]))
    stems = {role: render(insts) for role, insts in roles.items() if insts}
    if not stems:
        return None
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, wave in finalize(stems).items():
        sf.write(partial / f"{name}.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    partial.replace(target)
    return target


def _render_job(job: tuple[Song, Path]) -> Path | None:
    """Process-pool entry point for :func:`render_song`: failures become warnings."""
    try:
        return render_song(*job)
    except Exception as err:  # noqa: BLE001 - corpus files fail in many ways
        log.warning("skipping %s: %s: %s", job[0].name, type(err).__name__, err)
        return None


def all_songs(work_dir: Path, license_dir: Path, corpus_works: int | None, seed: int) -> list[Song]:
    """Corpus works and windows of the package's MIDI files (if it can be fetched).

    The licenses of the corpus, the soundfont and the package go to ``license_dir``.
    """
    from music21 import common

    license_dir.mkdir(parents=True, exist_ok=True)
    sources = {
        "music21-corpus.license.txt": Path(common.getCorpusFilePath()) / "license.txt",
        "fluid-soundfont-gm.copyright": Path("/usr/share/doc/fluid-soundfont-gm/copyright"),
    }
    for name, source in sources.items():
        if source.exists():
            shutil.copyfile(source, license_dir / name)
    songs = corpus_songs(CORPUS_QUOTAS, corpus_works, seed)
    root = fetch_package(MIDI_PACKAGE, work_dir, license_dir)
    if root is not None:
        songs += midi_songs(root)
    return songs


def without_collections(songs: Sequence[Song], exclude: Sequence[str]) -> list[Song]:
    """``songs`` minus those of the excluded collections (``blupi``: the General MIDI files)."""
    names = ["blupi" if song.source == "midi" else song.collection for song in songs]
    unknown = sorted(set(exclude) - set(names))
    if unknown:
        raise ValueError(f"unknown collection(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(sorted(set(names)))}")
    return [s for s, name in zip(songs, names, strict=True) if name not in exclude]


def prepare_stems(data_dir: Path, work_dir: Path | None = None, corpus_works: int | None = None,
                  workers: int = 2, seed: int = SEED, exclude: Sequence[str] = (),
                  ) -> dict[str, list[Song]]:
    """Build ``DATA/stems/{train,valid}``; resumable.

    Args:
        data_dir: Output root (``DATA``).
        work_dir: Where the MIDI package is downloaded (default ``DATA/_work``).
        corpus_works: About how many music21 works to draw (default: :data:`CORPUS_QUOTAS`).
        workers: Parallel rendering processes.
        seed: Seed of the work selection and of the program draws.
        exclude: Collections (composer names or ``blupi``) to leave out; the splits of the
            others do not change.

    Returns:
        The songs of each split (including any that failed to render).
    """
    data_dir = Path(data_dir)
    work_dir = Path(work_dir) if work_dir else data_dir / "_work"
    ensure_tools(["fluidsynth"], ["fluidsynth", "fluid-soundfont-gm"], force=not SOUNDFONT.exists())
    songs = all_songs(work_dir, data_dir / "licenses", corpus_works, seed)
    songs = without_collections(songs, exclude)
    splits = split_groups(songs, group=lambda s: s.group, source=lambda s: s.collection)
    jobs = [(song, data_dir / "stems" / split / song.name)
            for split, members in splits.items() for song in members]
    with ProcessPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(_render_job, jobs), total=len(jobs), desc="stem songs"))
    log.info("rendered %d of %d stem songs", sum(r is not None for r in results), len(jobs))
    return splits
