"""Training-data preparation: the split by group, collection exclusion, the stems' mixture."""

from pathlib import Path

import numpy as np
import pytest

from diffmusic.data.music import VALIDATION_ONLY, Track, split_groups, split_tracks
from diffmusic.data.stems import Song, finalize, without_collections


def _songs() -> list[Song]:
    corpus = [Song(f"{c}__w{k}", "corpus", Path("x"), f"{c}__w{k}", c)
              for c in ("bach", "palestrina", "mozart") for k in range(12)]
    midi = [Song(f"blupi__m{m}_w{k}", "midi", Path("y"), f"blupi__m{m}", "planetblupi-music-midi",
                 k / 6) for m in range(5) for k in range(6)]
    return corpus + midi


def _split(songs: list[Song]) -> dict[str, list[Song]]:
    return split_groups(songs, group=lambda s: s.group, source=lambda s: s.collection)


def test_split_keeps_groups_whole_and_covers_every_source():
    splits = _split(_songs())
    train = {s.group for s in splits["train"]}
    valid = {s.group for s in splits["valid"]}
    assert not train & valid
    assert len(splits["train"]) + len(splits["valid"]) == len(_songs())
    assert {s.collection for s in splits["valid"]} == {"bach", "palestrina", "mozart",
                                                       "planetblupi-music-midi"}
    assert _split(_songs()) == splits  # deterministic


def test_excluding_a_collection_leaves_the_other_splits_alone():
    full = _split(_songs())
    kept = _split(without_collections(_songs(), ["palestrina", "blupi"]))
    for part in ("train", "valid"):
        assert kept[part] == [s for s in full[part]
                              if s.collection not in ("palestrina", "planetblupi-music-midi")]
    with pytest.raises(ValueError, match="unknown collection"):
        without_collections(_songs(), ["beethoven"])


def test_mixture_is_the_exact_sum_of_the_stems():
    rng = np.random.default_rng(0)
    stems = {"vocals": rng.normal(size=1000), "bass": rng.normal(size=700) * 3,
             "other": rng.normal(size=1200)}
    out = finalize(stems)
    assert {len(w) for w in out.values()} == {1200}
    total = sum(out[name].astype(np.float32) for name in ("vocals", "bass", "other"))
    np.testing.assert_array_equal(out["mixture"], total)
    peak = max(np.abs(w).max() for w in out.values())
    assert 20 * np.log10(peak) == pytest.approx(-1.0, abs=0.01)


def test_validation_only_packages_and_shared_splits():
    tracks = [Track(package, f"t{k}", Path("x"), 60.0)
              for package in ("warzone2100-music", "asc-music") for k in range(40)]
    tracks += [Track("frozen-bubble-data", f"zik{k}", Path("x"), 60.0) for k in range(6)]
    tracks += [Track("fb-music-high", f"zik{k}", Path("x"), 60.0) for k in range(6)]
    splits = split_tracks(tracks)
    assert not [t for t in splits["train"] if t.package in VALIDATION_ONLY]
    assert sum(t.package == "asc-music" for t in splits["valid"]) == 40
    others = [t for t in tracks if t.package not in VALIDATION_ONLY]
    alone = split_tracks(others)
    assert alone["train"] == splits["train"]  # the held-out package moves no other track
    valid_names = {t.name for t in splits["valid"] if t.package == "frozen-bubble-data"}
    assert valid_names  # fb-music-high's renditions follow frozen-bubble's tracks
    assert {t.name for t in splits["valid"] if t.package == "fb-music-high"} == valid_names
