"""The demo corpus: real mp4 clips whose pictures and sound carry the catalog's concepts, and
label files written by simulated annotators of different quality.

Each concept has a visual cue and an audio cue, present with a random strength, sometimes only in
one modality, and occasionally faint in clips without the concept, so the concepts are learnable
but not trivially so:

=================  ==========================================  ===================================
concept            picture                                     sound
=================  ==========================================  ===================================
holiday            red/green tint, twinkling lights            bell chimes (880/1320 Hz)
halloween          dark frame, orange round "pumpkins"         low drone with tremolo (110 Hz)
gift giving        a box with a ribbon cross moving in         paper rustle (noise bursts)
family moments     2-4 skin-toned figures swaying              voice-like harmonic babble
shopping scenes    shelves of coloured items, panning camera   checkout beeps (1.8 kHz)
=================  ==========================================  ===================================

Ground truth goes to ``truth/labels.csv`` (only evaluation code reads it); the annotators' answers
go to ``labels/demo/<annotator>.json`` in the seed's flat format plus ``annotator``/``created_at``.
Everything is a pure function of ``seed``: the same seed draws the same scenes and labels.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from mlci.catalog import NONE_OF_THE_ABOVE
from mlci.layout import (
    CLIP_PREFIX,
    DEMO_VIDEO_KEY,
    DEMO_VIDEO_TRUTH_KEY,
    TRUTH_KEY,
    demo_clip_key,
    demo_label_key,
)
from mlci.media import ClipWriter, encode_clip
from mlci.storage import Store

__all__ = [
    "DemoCorpusSpec",
    "Annotator",
    "DEFAULT_ANNOTATORS",
    "DemoScene",
    "generate_demo_corpus",
    "generate_scene_clips",
    "DemoSummary",
    "write_demo_video",
]

HOLIDAY, HALLOWEEN, GIFT, FAMILY, SHOPPING = (
    "holiday",
    "halloween",
    "gift giving",
    "family moments",
    "shopping scenes",
)
CONCEPTS = (HOLIDAY, HALLOWEEN, GIFT, FAMILY, SHOPPING)


@dataclass(frozen=True)
class Annotator:
    """A simulated annotator: per-class sensitivity and specificity, how much they label."""

    name: str
    sensitivity: float
    specificity: float
    share: float  # relative chance of being picked for a clip
    empty_rate: float = 0.0  # answers with an empty label list (skipped the question)
    conflict_rate: float = 0.0  # ticks "none of the above" together with real classes


DEFAULT_ANNOTATORS = (
    Annotator("careful", sensitivity=0.95, specificity=0.97, share=0.45),
    Annotator("noisy", sensitivity=0.80, specificity=0.88, share=0.35, conflict_rate=0.03),
    Annotator("careless", sensitivity=0.60, specificity=0.80, share=0.20, empty_rate=0.05, conflict_rate=0.08),
)


@dataclass(frozen=True)
class DemoCorpusSpec:
    """What to generate. ``size`` is (width, height), both even."""

    n_clips: int = 300
    seed: int = 0
    duration: float = 4.0
    size: tuple[int, int] = (160, 120)
    fps: int = 15
    sample_rate: int = 22050
    labeled_share: float = 0.6
    annotators: tuple[Annotator, ...] = DEFAULT_ANNOTATORS
    base_url: str = "https://clips.mlci.invalid/"
    #: Minutes of the long demo video for the detection flow (0: none).
    video_minutes: float = 0.0

    def validate(self) -> None:
        if self.n_clips < 1:
            raise ValueError(f"n_clips must be >= 1, got {self.n_clips}")
        if self.duration <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration}")
        w, h = self.size
        if w < 16 or h < 16 or w % 2 or h % 2:
            raise ValueError(f"size must be even and at least 16x16, got {w}x{h}")
        if not 0 < self.labeled_share <= 1:
            raise ValueError(f"labeled_share must be in (0, 1], got {self.labeled_share}")
        if not 0 <= self.video_minutes <= 120:
            raise ValueError(f"video_minutes must be in [0, 120], got {self.video_minutes}")


@dataclass
class DemoSummary:
    """What :func:`generate_demo_corpus` did."""

    store: str
    n_clips: int
    clips_written: int
    positives: dict[str, int]
    n_none: int
    label_files: dict[str, int]  # key -> number of records
    n_labeled_clips: int
    votes_per_clip: dict[int, int] = field(default_factory=dict)
    video: str | None = None

    def format(self) -> str:
        lines = [
            f"demo corpus in {self.store}",
            f"  clips: {self.n_clips} ({self.clips_written} written, {self.n_clips - self.clips_written} already there)",
            "  positives per concept: " + ", ".join(f"{k} {v}" for k, v in self.positives.items()),
            f"  clips with none of the concepts: {self.n_none}",
            f"  labeled clips: {self.n_labeled_clips} "
            + "(" + ", ".join(f"{n} with {k} vote(s)" for k, n in sorted(self.votes_per_clip.items())) + ")",
        ]
        lines += [f"  {key}: {n} records" for key, n in self.label_files.items()]
        if self.video:
            lines.append(f"  long video for detection: {self.video} (where each concept is: {DEMO_VIDEO_TRUTH_KEY})")
        return "\n".join(lines)


def _draw_truth(rng: np.random.Generator, n: int) -> np.ndarray:
    """Correlated concept labels: a theme (xmas / halloween / other) drives the rates."""
    theme = rng.choice(3, size=n, p=[0.35, 0.28, 0.37])
    y = np.zeros((n, len(CONCEPTS)), dtype=np.int8)
    y[:, 0] = rng.random(n) < np.where(theme == 0, 0.85, 0.04)
    y[:, 1] = rng.random(n) < np.where(theme == 1, 0.9, 0.02)
    y[:, 2] = rng.random(n) < np.where(y[:, 0] == 1, 0.45, 0.08)
    y[:, 3] = rng.random(n) < 0.42
    y[:, 4] = rng.random(n) < np.where(theme == 0, 0.2, 0.08)
    return y


@dataclass(frozen=True)
class _ClipPlan:
    index: int
    seed: int
    labels: tuple[int, ...]
    spec: DemoCorpusSpec


def _cue_strengths(rng: np.random.Generator, labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Visual and audio strength of each concept's cue in one clip (0 = absent)."""
    k = len(labels)
    pos = np.asarray(labels, dtype=bool)
    vis = np.where(pos, rng.uniform(0.45, 1.0, k), 0.0)
    aud = np.where(pos, rng.uniform(0.45, 1.0, k), 0.0)
    # Positives sometimes show in one modality only; negatives sometimes carry a faint distractor.
    one_modality = pos & (rng.random(k) < 0.15)
    drop_visual = rng.random(k) < 0.5
    vis[one_modality & drop_visual] = 0.0
    aud[one_modality & ~drop_visual] = 0.0
    distract = ~pos & (rng.random(k) < 0.08)
    vis[distract] = rng.uniform(0.1, 0.35, k)[distract]
    faint_audio = distract & (rng.random(k) < 0.5)
    aud[faint_audio] = rng.uniform(0.1, 0.3, k)[faint_audio]
    return vis, aud


def _render_video(rng: np.random.Generator, plan: _ClipPlan, vis: np.ndarray) -> list[np.ndarray]:
    return list(_video_frames(rng, plan, vis))


def _video_frames(rng: np.random.Generator, plan: _ClipPlan, vis: np.ndarray, n_frames: int | None = None) -> Iterator[np.ndarray]:
    spec = plan.spec
    w, h = spec.size
    n = max(1, int(round(spec.duration * spec.fps))) if n_frames is None else n_frames
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 190, 3).astype(np.float32)
    grad = rng.uniform(-40, 40, 3).astype(np.float32)
    background = base + grad * (yy / h)[..., None]
    s_hol, s_hal, s_gift, s_fam, s_shop = vis

    lights = rng.uniform([0, 0], [w, h], size=(int(6 + 14 * s_hol), 2)).astype(int)
    light_phase = rng.uniform(0, 2 * np.pi, len(lights))
    pumpkins = rng.uniform([0.1 * w, 0.5 * h], [0.9 * w, 0.9 * h], size=(int(1 + 3 * s_hal), 2))
    n_people = int(rng.integers(2, 5))
    people_x = rng.uniform(0.15 * w, 0.85 * w, n_people)
    people_phase = rng.uniform(0, 2 * np.pi, n_people)
    shelf_colors = rng.uniform(30, 255, (6, 12, 3)).astype(np.float32)
    box_color = rng.uniform(40, 255, 3).astype(np.float32)
    ribbon_color = 255 - box_color
    distractor = rng.uniform([0, 0, 8, 8], [w, h, w / 3, h / 3])
    distractor_color = rng.uniform(0, 255, 3).astype(np.float32)
    distractor_v = rng.uniform(-3, 3, 2)

    for t in range(n):
        tf = t / spec.fps
        img = background.copy()
        # A neutral moving block appears in every clip so that motion alone is not a concept cue.
        dx, dy, dw, dh = distractor
        x0, y0 = int((dx + distractor_v[0] * t) % w), int((dy + distractor_v[1] * t) % h)
        img[y0 : y0 + int(dh), x0 : x0 + int(dw)] = distractor_color
        if s_shop > 0:
            shift = int(tf * 25 * s_shop) % 12
            cols = (np.arange(w) // max(1, w // 12) + shift) % 12
            rows = np.clip((np.arange(h) * 6) // h, 0, 5)
            shelves = shelf_colors[rows][:, cols]
            stripe = ((np.arange(h) % max(2, h // 6)) < 2)[:, None, None]
            shelves = np.where(stripe, 90.0, shelves)
            img = (1 - 0.8 * s_shop) * img + 0.8 * s_shop * shelves
        if s_hol > 0:
            tint = np.where((xx // 16 + yy // 16) % 2 == 0, 1.0, 0.0)[..., None]
            palette = tint * np.array([190, 30, 40], np.float32) + (1 - tint) * np.array([30, 140, 50], np.float32)
            img = (1 - 0.5 * s_hol) * img + 0.5 * s_hol * palette
            on = np.sin(light_phase + tf * 6) > 0
            for (lx, ly) in lights[on]:
                img[max(0, ly - 1) : ly + 2, max(0, lx - 1) : lx + 2] = (255, 230, 120)
        if s_hal > 0:
            img *= 1 - 0.6 * s_hal
            for px, py in pumpkins:
                r = (6 + 8 * s_hal) * (1 + 0.05 * np.sin(tf * 3))
                mask = ((xx - px) / (1.2 * r)) ** 2 + ((yy - py) / r) ** 2 < 1
                img[mask] = (240, 120, 20)
        if s_fam > 0:
            for px, ph in zip(people_x, people_phase):
                cx = px + 4 * np.sin(tf * 2 + ph)
                body = ((xx - cx) / (0.06 * w)) ** 2 + ((yy - 0.72 * h) / (0.22 * h)) ** 2 < 1
                head = ((xx - cx) / (0.045 * w)) ** 2 + ((yy - 0.42 * h) / (0.07 * h)) ** 2 < 1
                alpha = 0.35 + 0.65 * s_fam
                img[body] = (1 - alpha) * img[body] + alpha * np.array([70, 90, 160], np.float32)
                img[head] = (1 - alpha) * img[head] + alpha * np.array([225, 180, 150], np.float32)
        if s_gift > 0:
            side = int((0.18 + 0.2 * s_gift) * h)
            cx = int(-side + (w / 2 + side) * min(1.0, tf / (0.6 * spec.duration)))
            cy = int(0.55 * h)
            x0, x1 = max(0, cx - side // 2), max(0, min(w, cx + side // 2))
            y0, y1 = max(0, cy - side // 2), min(h, cy + side // 2)
            if x1 > x0:
                img[y0:y1, x0:x1] = box_color
                img[y0:y1, max(x0, cx - 2) : max(x0, min(x1, cx + 2))] = ribbon_color
                img[max(0, cy - 2) : cy + 2, x0:x1] = ribbon_color
        img += rng.normal(0, 6, img.shape).astype(np.float32)
        yield np.clip(img, 0, 255).astype(np.uint8)


def _render_audio(rng: np.random.Generator, plan: _ClipPlan, aud: np.ndarray) -> np.ndarray:
    spec = plan.spec
    sr = spec.sample_rate
    t = np.arange(int(round(spec.duration * sr)), dtype=np.float64) / sr
    s_hol, s_hal, s_gift, s_fam, s_shop = aud
    # Room tone in every clip, at a random level, so loudness alone says nothing.
    sig = rng.normal(0, rng.uniform(0.01, 0.05), t.size)
    if s_hol > 0:
        phase = (t * 2.0 + rng.uniform()) % 1.0
        env = np.exp(-6 * phase)
        sig += 0.25 * s_hol * env * (np.sin(2 * np.pi * 880 * t) + 0.6 * np.sin(2 * np.pi * 1320 * t))
    if s_hal > 0:
        trem = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
        sig += 0.35 * s_hal * trem * (np.sin(2 * np.pi * 110 * t) + 0.5 * np.sin(2 * np.pi * 165 * t))
    if s_gift > 0:
        noise = rng.normal(0, 1, t.size)
        hp = np.diff(noise, prepend=0.0)  # crude high-pass: rustle is bright
        bursts = (np.sin(2 * np.pi * rng.uniform(2, 4) * t + rng.uniform(0, 6)) > 0.3).astype(float)
        sig += 0.12 * s_gift * hp * bursts
    if s_fam > 0:
        f0 = rng.uniform(140, 240)
        syll = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
        voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        sig += 0.15 * s_fam * syll * voice
    if s_shop > 0:
        beep_times = np.sort(rng.uniform(0, spec.duration, int(2 + 4 * s_shop)))
        for bt in beep_times:
            m = (t >= bt) & (t < bt + 0.08)
            sig[m] += 0.3 * s_shop * np.sin(2 * np.pi * 1800 * t[m])
    return np.clip(sig, -1, 1).astype(np.float32)


def _encode_planned(plan: _ClipPlan) -> bytes:
    rng = np.random.default_rng(plan.seed)
    vis, aud = _cue_strengths(rng, plan.labels)
    frames = _render_video(rng, plan, vis)
    audio = _render_audio(rng, plan, aud)
    with tempfile.TemporaryDirectory(prefix="mlci-demo-") as tmp:
        path = os.path.join(tmp, "clip.mp4")
        encode_clip(path, frames=frames, fps=plan.spec.fps, audio=audio, sample_rate=plan.spec.sample_rate)
        with open(path, "rb") as fh:
            return fh.read()


@dataclass(frozen=True)
class DemoScene:
    """A stretch of a demo video: ``duration`` seconds showing and sounding ``concepts`` (none: a plain scene)."""

    duration: float
    concepts: tuple[str, ...] = ()


def write_demo_video(
    path: str | os.PathLike,
    scenes: Sequence[DemoScene],
    *,
    size: tuple[int, int] = (160, 120),
    fps: int = 15,
    sample_rate: int = 22050,
    seed: int = 0,
    strength: float = 0.9,
    audio: bool = True,
    loop_seconds: float | None = None,
    faststart: bool = False,
) -> None:
    """Write a long mp4 made of scenes in the demo corpus's look and sound, frames and sound interleaved.

    Each scene draws its own background and cues (``strength`` for its concepts, no faint
    distractors), so a concept is present exactly during its scenes. Memory holds one second of
    frames at a time. ``audio=False`` writes no sound track. ``loop_seconds`` renders only that
    much of each scene and plays it forwards and backwards for the rest (much faster for long,
    large videos; the cues stay the same). ``faststart`` puts the index first (see
    :class:`~mlci.media.ClipWriter`).
    """
    unknown = {c for s in scenes for c in s.concepts} - set(CONCEPTS)
    if unknown:
        raise ValueError(f"unknown concepts {sorted(unknown)}; the demo concepts are {list(CONCEPTS)}")
    spec = DemoCorpusSpec(size=size, fps=fps, sample_rate=sample_rate)
    spec.validate()
    with ClipWriter(path, size=size, fps=fps, sample_rate=sample_rate if audio else None, faststart=faststart) as writer:
        for i, scene in enumerate(scenes):
            labels = tuple(int(c in scene.concepts) for c in CONCEPTS)
            plan = _ClipPlan(i, seed, labels, DemoCorpusSpec(duration=scene.duration, size=size, fps=fps, sample_rate=sample_rate))
            cues = np.where(np.asarray(labels, bool), strength, 0.0)
            video_rng, audio_rng = (np.random.default_rng([seed, i, stream]) for stream in (0, 1))
            n = max(1, int(round(scene.duration * fps)))
            if loop_seconds is None:
                frames: Iterator[np.ndarray] = _video_frames(video_rng, plan, cues)
            else:
                rendered = list(_video_frames(video_rng, plan, cues, n_frames=min(n, max(1, int(loop_seconds * fps)))))
                cycle = rendered + rendered[-2:0:-1] if len(rendered) > 2 else rendered
                frames = (cycle[k % len(cycle)] for k in range(n))
            sound = _render_audio(audio_rng, plan, cues) if audio else None
            for second in range(int(np.ceil(n / fps))):
                writer.add_frames(f for _, f in zip(range(fps), frames))
                if sound is not None:
                    writer.add_audio(sound[second * sample_rate : (second + 1) * sample_rate])


def generate_scene_clips(
    store: Store,
    *,
    concepts: Sequence[str] = (HOLIDAY, HALLOWEEN),
    n_clips: int = 48,
    duration: float = 3.0,
    cut_share: float = 0.5,
    prefix: str = f"{CLIP_PREFIX}scenes/",
    seed: int = 0,
) -> pd.DataFrame:
    """Short clips in the demo look for training a detector, and their true labels.

    Half the clips show one of ``concepts`` (in turn), half a plain scene; ``cut_share`` of them
    have a cut at a random point between that scene and a plain one, and are labelled by the
    concept's majority of the clip, which teaches a model what a window straddling a scene change
    is. Returns the labels as a :data:`~mlci.tables.CONSENSUS` table (one row per clip and concept,
    ``method`` "truth"); clips already in the store are kept.
    """
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlci-scenes-") as tmp:
        path = os.path.join(tmp, "clip.mp4")
        for i in range(n_clips):
            concept = concepts[(i // 2) % len(concepts)] if i % 2 == 0 else None
            cues = (concept,) if concept else ()
            if rng.random() < cut_share:
                share = float(rng.uniform(0.1, 0.9))
                scenes = [DemoScene(round(duration * share, 2), cues), DemoScene(round(duration * (1 - share), 2))]
                if rng.random() < 0.5:
                    scenes.reverse()
                concept = concept if share >= 0.5 else None
            else:
                scenes = [DemoScene(duration, cues)]
            write_demo_video(path, scenes, seed=seed * 10_000 + i, strength=float(rng.uniform(0.6, 1.0)))
            key = f"{prefix}clip-{i:04d}.mp4"
            with open(path, "rb") as fh:
                store.write_if_absent(key, fh.read())
            rows += [{"asset": key, "class": c, "posterior": float(c == concept), "label": int(c == concept),
                      "n_votes": 1, "method": "truth"} for c in concepts]
    return pd.DataFrame(rows)


def _annotate(
    rng: np.random.Generator, truth: np.ndarray, spec: DemoCorpusSpec
) -> dict[str, list[tuple[int, list[str]]]]:
    """Which annotator labels which clip, and what they answer."""
    n = len(truth)
    labeled = np.sort(rng.choice(n, size=max(1, int(round(spec.labeled_share * n))), replace=False))
    shares = np.array([a.share for a in spec.annotators], dtype=float)
    shares /= shares.sum()
    answers: dict[str, list[tuple[int, list[str]]]] = {a.name: [] for a in spec.annotators}
    n_votes = rng.choice([1, 2, 3], size=len(labeled), p=[0.6, 0.28, 0.12])
    for clip, k in zip(labeled, n_votes):
        who = rng.choice(len(spec.annotators), size=min(k, len(spec.annotators)), replace=False, p=shares)
        for a_idx in sorted(who):
            ann = spec.annotators[a_idx]
            if rng.random() < ann.empty_rate:
                answers[ann.name].append((int(clip), []))
                continue
            u = rng.random(len(CONCEPTS))
            said = np.where(truth[clip] == 1, u < ann.sensitivity, u > ann.specificity)
            names = [c for c, s in zip(CONCEPTS, said) if s]
            if not names:
                names = [NONE_OF_THE_ABOVE]
            elif rng.random() < ann.conflict_rate:
                names.append(NONE_OF_THE_ABOVE)
            answers[ann.name].append((int(clip), names))
    return answers


def generate_demo_corpus(
    store: Store,
    spec: DemoCorpusSpec | None = None,
    *,
    n_jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> DemoSummary:
    """Write the demo corpus into ``store`` and return a summary.

    Clips go to ``clips/demo/clip-NNNN.mp4``, annotators' label files to ``labels/demo/``, ground
    truth to ``truth/labels.csv``. Objects that already exist are never overwritten: a re-run
    with the same spec writes nothing; label files or truth that differ raise ``FileExistsError``.

    Parameters
    ----------
    store : Store
    spec : DemoCorpusSpec, default=None
        What to generate; ``DemoCorpusSpec()`` when None.
    n_jobs : int, default=None
        Encoding processes; all cores when None.
    progress : callable, default=None
        Called with the number of clips finished since the last call.
    """
    spec = spec or DemoCorpusSpec()
    spec.validate()
    root = np.random.default_rng(spec.seed)
    truth = _draw_truth(root, spec.n_clips)
    clip_seeds = root.integers(0, 2**63 - 1, size=spec.n_clips)
    keys = [demo_clip_key(i) for i in range(spec.n_clips)]
    plans = [_ClipPlan(i, int(clip_seeds[i]), tuple(int(v) for v in truth[i]), spec) for i in range(spec.n_clips)]

    written = 0
    n_jobs = n_jobs or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=n_jobs) if n_jobs > 1 else _Serial() as pool:
        for plan, data in zip(plans, pool.map(_encode_planned, plans, chunksize=4)):
            # An existing clip is kept as it is (x264 output can differ by a few bytes between
            # processes, so "the same clip" is decided by key, not by bytes).
            written += store.write_if_absent(keys[plan.index], data)
            if progress:
                progress(1)

    answers = _annotate(root, truth, spec)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    label_files: dict[str, int] = {}
    votes = np.zeros(spec.n_clips, dtype=int)
    for a_idx, (name, rows) in enumerate(answers.items()):
        records = []
        for j, (clip, names) in enumerate(rows):
            votes[clip] += 1
            records.append(
                {
                    "etag": hashlib.sha256(f"{spec.seed}:{keys[clip]}".encode()).hexdigest()[:24],
                    "labels": names,
                    "data": spec.base_url + keys[clip][len(CLIP_PREFIX) :],
                    "annotator": name,
                    "created_at": (start + timedelta(minutes=7 * j + a_idx)).isoformat(),
                }
            )
        key = demo_label_key(name)
        _put_once(store, key, json.dumps(records, indent=1).encode())
        label_files[key] = len(records)

    truth_df = pd.DataFrame(truth, columns=list(CONCEPTS))
    truth_df.insert(0, "key", keys)
    buf = io.StringIO()
    truth_df.to_csv(buf, index=False)
    _put_once(store, TRUTH_KEY, buf.getvalue().encode())

    video = _write_demo_video(store, spec) if spec.video_minutes > 0 else None
    counts = np.bincount(votes, minlength=4)
    return DemoSummary(
        store=store.uri,
        n_clips=spec.n_clips,
        clips_written=written,
        positives={c: int(truth[:, j].sum()) for j, c in enumerate(CONCEPTS)},
        n_none=int((truth.sum(axis=1) == 0).sum()),
        label_files=label_files,
        n_labeled_clips=int((votes > 0).sum()),
        votes_per_clip={k: int(counts[k]) for k in range(1, len(counts)) if counts[k]},
        video=video,
    )


def _write_demo_video(store: Store, spec: DemoCorpusSpec) -> str:
    """``videos/demo/scenes.mp4``: each concept in turn for 10-20 s, plain scenes between; its truth table."""
    rng = np.random.default_rng([spec.seed, 1])
    scenes, t, i = [], 0.0, 0
    while t < spec.video_minutes * 60:
        plain = DemoScene(float(rng.integers(8, 16)))
        shown = DemoScene(float(rng.integers(10, 21)), (CONCEPTS[i % len(CONCEPTS)],))
        scenes += [plain, shown]
        t += plain.duration + shown.duration
        i += 1
    rows, start = [], 0.0
    for scene in scenes:
        rows += [{"concept": c, "time_begin": start, "time_end": start + scene.duration} for c in scene.concepts]
        start += scene.duration
    with tempfile.TemporaryDirectory(prefix="mlci-demo-") as tmp:
        path = os.path.join(tmp, "scenes.mp4")
        write_demo_video(path, scenes, size=spec.size, fps=spec.fps, sample_rate=spec.sample_rate, seed=spec.seed)
        with open(path, "rb") as fh:
            store.write_if_absent(DEMO_VIDEO_KEY, fh.read())
    buf = io.StringIO()
    pd.DataFrame(rows, columns=["concept", "time_begin", "time_end"]).to_csv(buf, index=False)
    _put_once(store, DEMO_VIDEO_TRUTH_KEY, buf.getvalue().encode())
    return DEMO_VIDEO_KEY


def _put_once(store: Store, key: str, data: bytes) -> None:
    """Write ``data`` unless the key exists; an existing object with other content is an error."""
    if not store.write_if_absent(key, data) and store.read_bytes(key) != data:
        raise FileExistsError(
            f"{key} already exists in {store.uri} with other content (a demo corpus with another "
            "seed or size?); use an empty store"
        )


def load_truth(store: Store) -> pd.DataFrame:
    """The demo corpus's ground truth (``truth/labels.csv``): one row per clip, a 0/1 column per concept."""
    return pd.read_csv(io.BytesIO(store.read_bytes(TRUTH_KEY)), dtype={"key": "string"})


class _Serial:
    """A stand-in for an executor that maps in the calling process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)
