"""Consensus at scale: Dawid–Skene next to majority vote on one million annotation rows.

Simulates 100,000 clips x 5 classes; every clip is labeled by 1–3 of 30 annotators (each answers
all five classes of the clips it sees), each annotator with its own sensitivity and specificity.
Measures wall time and peak traced memory (numpy and pandas allocations, via tracemalloc, in a
second untimed call) of majority vote and Dawid–Skene in the same run, prints their ratio and the accuracy of each
against the simulated truth. Target: Dawid–Skene under 10 s and 2 GB on 2 cores.

Run: ``.venv/bin/python benchmarks/consensus.py [--clips 100000] [--annotators 30] [--seed 0]``
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd

from mlci.consensus import DawidSkene, OneCoinDawidSkene, compute_consensus, majority_vote

CLASSES = ["holiday", "halloween", "gift giving", "family moments", "shopping scenes"]


def simulate(n_clips: int, n_annotators: int, random_state: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotations, truth): long ANNOTATIONS-like rows and the true label per (asset, class)."""
    rng = np.random.default_rng(random_state)
    n_classes = len(CLASSES)
    prevalence = np.array([0.32, 0.28, 0.22, 0.41, 0.10])
    truth = rng.random((n_clips, n_classes)) < prevalence
    se = rng.uniform(0.55, 0.98, size=(n_annotators, n_classes))
    sp = rng.uniform(0.70, 0.99, size=(n_annotators, n_classes))
    per_clip = rng.integers(1, 4, size=n_clips)  # 1, 2 or 3 annotators per clip
    # Distinct annotators per clip: the first k of a random permutation of the 30.
    perm = np.argsort(rng.random((n_clips, n_annotators)), axis=1)[:, :3]
    clip = np.repeat(np.arange(n_clips), per_clip)
    ann = perm[np.arange(n_clips).repeat(per_clip), np.concatenate([np.arange(k) for k in per_clip])]
    clip = np.repeat(clip, n_classes)
    ann = np.repeat(ann, n_classes)
    cls = np.tile(np.arange(n_classes), len(clip) // n_classes)
    y = truth[clip, cls]
    p_yes = np.where(y, se[ann, cls], 1 - sp[ann, cls])
    value = (rng.random(len(clip)) < p_yes).astype(np.int8)
    assets = np.array([f"clips/sim/clip{i:06d}.mp4" for i in range(n_clips)], dtype=object)
    annotators = np.array([f"annotator{j:02d}" for j in range(n_annotators)], dtype=object)
    classes = np.array(CLASSES, dtype=object)
    annotations = pd.DataFrame(
        {
            "asset": pd.array(assets[clip], dtype="string"),
            "annotator": pd.array(annotators[ann], dtype="string"),
            "class": pd.array(classes[cls], dtype="string"),
            "value": value,
        }
    )
    truth_df = pd.DataFrame(
        {
            "asset": np.repeat(assets, n_classes),
            "class": np.tile(classes, n_clips),
            "truth": truth.reshape(-1).astype(np.int8),
        }
    )
    return annotations, truth_df


def measure(fn, *args, **kwargs):
    """(result, seconds, peak MiB of traced allocations).

    Time is taken on a plain call; memory on a second call under tracemalloc (which slows
    allocation-heavy code, so it must not be timed).
    """
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / 2**20


def accuracy(labels: pd.DataFrame, truth: pd.DataFrame) -> float:
    merged = labels.merge(truth, on=["asset", "class"], how="left", validate="one_to_one")
    return float((merged["label"].to_numpy() == merged["truth"].to_numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    annotations, truth = simulate(args.clips, args.annotators, args.seed)
    print(f"simulated {len(annotations):,} annotation rows: {args.clips:,} clips x {len(CLASSES)} classes, "
          f"{args.annotators} annotators, 1-3 per clip ({time.perf_counter() - t0:.1f} s); cpus={os.cpu_count()}")

    mv, mv_s, mv_mb = measure(majority_vote, annotations)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds, ds_s, ds_mb = measure(DawidSkene().fit, annotations)
        oc, oc_s, oc_mb = measure(OneCoinDawidSkene().fit, annotations)
    for w in caught:
        print(f"warning: {w.message}")
    full, full_s, full_mb = measure(compute_consensus, annotations, method="dawid_skene")

    ds_labels = ds.items_[["asset", "class"]].assign(label=ds.predict().to_numpy())
    oc_labels = oc.items_[["asset", "class"]].assign(label=oc.predict().to_numpy())
    multi = truth.merge(mv[["asset", "class", "n_votes"]], on=["asset", "class"])
    multi = multi[multi["n_votes"] >= 2][["asset", "class", "truth"]]

    def acc_multi(labels: pd.DataFrame) -> float:
        return accuracy(labels.merge(multi[["asset", "class"]], on=["asset", "class"]), multi)

    print()
    print(f"{'step':<34}{'time s':>9}{'peak MiB':>10}{'accuracy':>10}{'acc >=2 votes':>15}")
    rows = [
        ("majority vote (baseline)", mv_s, mv_mb, accuracy(mv, truth), acc_multi(mv)),
        (f"Dawid-Skene fit ({ds.n_iter_} EM steps)", ds_s, ds_mb, accuracy(ds_labels, truth), acc_multi(ds_labels)),
        (f"one-coin DS fit ({oc.n_iter_} EM steps)", oc_s, oc_mb, accuracy(oc_labels, truth), acc_multi(oc_labels)),
        ("compute_consensus (DS+agreement)", full_s, full_mb, accuracy(full.labels, truth), acc_multi(full.labels)),
    ]
    for name, s, mb, acc, accm in rows:
        print(f"{name:<34}{s:>9.2f}{mb:>10.0f}{acc:>10.4f}{accm:>15.4f}")
    print()
    print(f"ratio Dawid-Skene / majority vote: time {ds_s / mv_s:.1f}x, peak memory {ds_mb / mv_mb:.1f}x")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {rss:.0f} MiB")
    ok = ds_s < 10 and ds_mb < 2048
    print(f"target (DS < 10 s and < 2 GB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
