"""Benchmark: how many labels each query strategy needs, against random sampling, on tasks that cover
the known failure modes of uncertainty sampling (issue 18).

Protocol, per task and seed (the same split and start set for every strategy of that seed):

- a stratified 70/30 pool/test split; a start set of 10 pool clips with at least one positive and
  one negative; batches of 10 chosen by the strategy from the rest of the pool (which it sees
  without labels: a :class:`mlci.strategies.Pool` with the model's scores); the project's
  per-concept estimator (``logistic_regression`` with its defaults, standardised features) refit
  after every batch; stop at 60 % of the pool;
- per round the test AP; the target is 95 % of the test AP of the same estimator fit on the whole
  pool; ``labels`` = the first label count whose test AP reaches it (the budget's end + one batch
  when never); ``AULC`` = the mean test AP over the rounds (equal spacing).

Per task and strategy: mean labels-to-target over seeds ÷ the same for random (``ratio``), and mean
AULC. The noise floor is a second, independent random run against random (``random_2``): its ratio
must sit near 1.0, or the seeds are too few; each task's 90 % bootstrap interval (over seeds) of
that ratio says how far a ratio can stray by chance, and the benchmark prints how many seeds would
bring the widest to +-0.05. Summary per strategy: median ratio, worst ratio, tasks worse than
random (ratio > 1.05) and how many of those are worse beyond the noise (interval above 1.0).

Usage: ``.venv/bin/python benchmarks/label_efficiency.py [--seeds 30] [--strategies random,margin,...]
[--tasks breast_cancer,...] [--jobs 2]``; ``--quick`` runs 5 seeds on 6 tasks.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification, make_multilabel_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlci.strategies import STRATEGIES, LabeledSet, Pool, get_strategy

BATCH = 10
START = 10
BUDGET_SHARE = 0.6
TARGET = 0.95


@dataclass(frozen=True)
class Task:
    """One binary task: features, labels, and which failure mode it stands for."""

    name: str
    X: np.ndarray
    y: np.ndarray
    note: str


def _one_vs_rest(name: str, X, labels, classes, note: str) -> list[Task]:
    return [Task(f"{name}_{c}", X, (labels == c).astype(int), note) for c in classes]


def build_tasks(random_state: int = 0) -> list[Task]:
    """At least 15 binary tasks: scikit-learn's datasets and generated failure modes."""
    tasks = [Task("breast_cancer", *load_breast_cancer(return_X_y=True), "real, balanced-ish")]
    X, y = load_digits(return_X_y=True)
    tasks += _one_vs_rest("digits", X, y, (1, 3, 8), "real, 10 % positives")
    X, y = load_wine(return_X_y=True)
    tasks += _one_vs_rest("wine", X, y, (0, 2), "real, small")

    def generated(name, note, **kw) -> Task:
        X, y = make_classification(random_state=random_state, **kw)
        return Task(name, X, y, note)

    tasks += [
        generated("rare_1pct", "1 % positives", n_samples=3000, n_features=20, n_informative=6,
                  weights=[0.99], flip_y=0.0, class_sep=1.5),
        generated("rare_5pct", "5 % positives", n_samples=2000, n_features=20, n_informative=6,
                  weights=[0.95], flip_y=0.0),
        generated("noisy_20pct", "20 % label noise", n_samples=1500, n_features=20, n_informative=8, flip_y=0.4),
        generated("high_dim", "dimension >> labels", n_samples=800, n_features=500, n_informative=20),
        generated("redundant", "many redundant features", n_samples=1500, n_features=60, n_informative=5,
                  n_redundant=50),
        generated("clustered", "well-separated clusters", n_samples=1500, n_features=10, n_informative=6,
                  n_clusters_per_class=6, class_sep=3.0),
        generated("easy", "easy, balanced", n_samples=1500, n_features=10, n_informative=5, class_sep=2.0),
    ]
    X, Y = make_multilabel_classification(n_samples=2000, n_features=30, n_classes=5, n_labels=2,
                                          random_state=random_state)
    prevalence = Y.mean(axis=0)
    rare = int(np.argmin(prevalence))
    tasks += [Task(f"multilabel_rare_{rare}", X, Y[:, rare], f"multi-label pool, rare concept ({prevalence[rare]:.0%})"),
              Task("multilabel_common", X, Y[:, int(np.argmax(prevalence))], "multi-label pool, common concept")]
    return tasks


def demo_tasks(folder: Path, n_clips: int = 600) -> list[Task]:
    """The demo corpus's concepts on the basic extractor's features (generated once into ``folder``)."""
    from mlci.analysis.data import load_analysis_data
    from mlci.demo import DemoCorpusSpec, generate_demo_corpus
    from mlci.features import compute_features
    from mlci.storage import open_store

    store = open_store(folder.resolve().as_uri())
    generate_demo_corpus(store, DemoCorpusSpec(n_clips=n_clips))  # writes nothing when already there
    compute_features(store)  # likewise: only clips without features
    data, _ = load_analysis_data(store, source="truth")
    return [Task(f"demo_{c.replace(' ', '_')}", data.X, data.Y[:, j].astype(int), "demo corpus concept")
            for j, c in enumerate(data.concepts)]


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _split(task: Task, seed: int):
    rng = np.random.default_rng(seed)
    pool, test = train_test_split(np.arange(len(task.y)), test_size=0.3, stratify=task.y, random_state=seed)
    y_pool = task.y[pool]
    start = [int(rng.choice(np.flatnonzero(y_pool == 1))), int(rng.choice(np.flatnonzero(y_pool == 0)))]
    rest = rng.permutation(np.setdiff1d(np.arange(len(pool)), start))
    start += [int(i) for i in rest[: START - 2]]
    return pool, test, np.array(start)


def run_curve(task: Task, seed: int, strategy: Callable, full_ap: float) -> tuple[float, float]:
    """Labels to reach the target and AULC of one strategy on one seed."""
    pool, test, start = _split(task, seed)
    Xp, yp, Xt, yt = task.X[pool], task.y[pool], task.X[test], task.y[test]
    keys = np.array([str(i) for i in range(len(pool))])
    labeled = list(start)
    budget = int(BUDGET_SHARE * len(pool))
    target = TARGET * full_ap
    reached, aps = None, []
    while True:
        model = _model().fit(Xp[labeled], yp[labeled])
        ap = average_precision_score(yt, model.predict_proba(Xt)[:, 1])
        aps.append(ap)
        if reached is None and ap >= target:
            reached = len(labeled)
        if len(labeled) >= budget:
            break
        chosen = strategy(model, Xp, keys, yp, labeled, seed * 7919 + len(labeled))
        labeled += [int(i) for i in chosen]
    return float(reached if reached is not None else budget + BATCH), float(np.mean(aps))


def mlci_strategy(name: str, **params) -> Callable:
    """A chooser backed by ``mlci.strategies``: the pool without labels, the model's scores."""
    strategy = get_strategy(name, **params)

    def choose(model, X, keys, y, labeled, random_state):
        proba = model.predict_proba(X)[:, 1:2]
        pool = Pool(keys, X, proba=proba)
        known = LabeledSet(keys[labeled], X[labeled], y[labeled][:, None])
        return strategy.query(pool, labeled=known, batch_size=BATCH, exclude=keys[labeled],
                              random_state=random_state).indices

    return choose


def _cell(task: Task, seed: int, names: list[str], full_ap: float) -> dict:
    out = {}
    for name in names:
        base = "random" if name == "random_2" else name
        # random_2: the same strategy as random, other draws: the noise floor.
        offset = 104729 if name == "random_2" else 0
        chooser = mlci_strategy(base)
        out[name] = run_curve(task, seed, lambda m, X, k, y, lab, rs: chooser(m, X, k, y, lab, rs + offset), full_ap)
    return out


def ratio_interval(labels: np.ndarray, random_labels: np.ndarray, *, level: float = 0.9,
                   n_boot: int = 2000, random_state: int = 0) -> tuple[float, float]:
    """Bootstrap interval of ``mean(labels) / mean(random_labels)``, resampling seeds (paired: a seed
    keeps its split and start set for both)."""
    rng = np.random.default_rng(random_state)
    idx = rng.integers(len(labels), size=(n_boot, len(labels)))
    boot = labels[idx].mean(axis=1) / random_labels[idx].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))


def summarize(results: dict, tasks: list[str], names: list[str]) -> tuple[dict, dict, dict]:
    """Per task and strategy the ratio to random and its 90 % interval over seeds; per strategy
    median, worst, tasks worse (ratio > 1.05, and the interval above 1.0: worse beyond the seeds'
    noise), AULC, and the median over the tasks that can tell strategies apart (random needs more
    than 3 batches after its start labels to reach the target; elsewhere every ratio is about 1)."""
    ratios = {(t, n): results[t, n][0] / results[t, "random"][0] for t in tasks for n in names}
    intervals = {(t, n): ratio_interval(results[t, n][2], results[t, "random"][2]) for t in tasks for n in names}
    telling = [t for t in tasks if results[t, "random"][0] > START + 3 * BATCH]
    summary = {}
    for n in names:
        r = np.array([ratios[t, n] for t in tasks])
        summary[n] = {"median": float(np.median(r)), "worst": float(r.max()), "worse": int((r > 1.05).sum()),
                      "worse_beyond_noise": sum(intervals[t, n][0] > 1.0 for t in tasks),
                      "aulc": float(np.mean([results[t, n][1] for t in tasks])),
                      "median_telling": float(np.median([ratios[t, n] for t in telling])) if telling else float("nan")}
    return ratios, intervals, summary


def markdown(results: dict, tasks: list[str], names: list[str], header: str) -> str:
    """The benchmark's two tables as markdown (what ``--write-docs`` puts in docs/strategies.md)."""
    ratios, intervals, summary = summarize(results, tasks, names)
    lines = [header, "", "| strategy | median ratio | worst ratio | tasks worse than random | of them beyond noise "
             "| mean AULC | median ratio, tasks that tell |", "|---|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        m = summary[n]
        lines.append(f"| `{n}` | {m['median']:.2f} | {m['worst']:.2f} | {m['worse']} | {m['worse_beyond_noise']} "
                     f"| {m['aulc']:.3f} | {m['median_telling']:.2f} |")
    lines += ["", "| task | random's labels | noise (90 %) | " + " | ".join(f"`{n}`" for n in names if n != "random")
              + " |", "|---|---:|---:|" + "---:|" * (len(names) - 1)]
    for t in tasks:
        low, high = intervals[t, "random_2"]
        lines.append(f"| {t} | {results[t, 'random'][0]:.0f} | {low:.2f}–{high:.2f} | "
                     + " | ".join(f"{ratios[t, n]:.2f}" for n in names if n != "random") + " |")
    return "\n".join(lines) + "\n"


def write_docs(path: Path, table: str) -> None:
    """Replace the block between the benchmark's markers in ``path`` with ``table``."""
    begin, end = "<!-- label-efficiency:begin -->", "<!-- label-efficiency:end -->"
    text = path.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{path} has no {begin} ... {end} block to replace")
    head, rest = text.split(begin, 1)
    path.write_text(head + begin + "\n" + table + end + rest.split(end, 1)[1], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--strategies", default=",".join(
        ["random", "margin_coverage", *sorted(set(STRATEGIES) - {"random", "margin_coverage"})]))
    parser.add_argument("--tasks", default="")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="5 seeds, every third task: a smoke run")
    parser.add_argument("--demo-store", type=Path, default=Path.home() / ".cache" / "mlci-benchmarks" / "demo-600",
                        help="folder of the demo corpus the demo tasks use (generated there when missing)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo corpus's tasks")
    parser.add_argument("--write-docs", type=Path, help="put the tables in this markdown file (docs/strategies.md)")
    args = parser.parse_args()
    tasks = build_tasks() + ([] if args.no_demo else demo_tasks(args.demo_store))
    if args.tasks:
        wanted = set(args.tasks.split(","))
        tasks = [t for t in tasks if t.name in wanted]
    seeds = list(range(5 if args.quick else args.seeds))
    if args.quick:
        tasks = tasks[::3]
    names = [s for s in args.strategies.split(",") if s != "random"]
    names = ["random", "random_2", *names]
    started = time.perf_counter()
    full = {t.name: float(np.mean([average_precision_score(
        t.y[test], _model().fit(t.X[pool], t.y[pool]).predict_proba(t.X[test])[:, 1])
        for pool, test, _ in (_split(t, s) for s in seeds)])) for t in tasks}
    cells = Parallel(n_jobs=args.jobs)(delayed(_cell)(t, s, names, full[t.name]) for t in tasks for s in seeds)
    results = {}  # (task, strategy) -> (mean labels, mean AULC, labels per seed)
    for i, t in enumerate(tasks):
        mine = cells[i * len(seeds):(i + 1) * len(seeds)]
        for name in names:
            labels = np.array([c[name][0] for c in mine])
            results[t.name, name] = (float(labels.mean()), float(np.mean([c[name][1] for c in mine])), labels)
    task_names = [t.name for t in tasks]
    ratios, intervals, summary = summarize(results, task_names, names)

    header = (f"{len(tasks)} tasks x {len(seeds)} seeds, start {START}, batch {BATCH}, budget {BUDGET_SHARE:.0%} of "
              f"the pool, target {TARGET:.0%} of the full-pool test AP; {time.perf_counter() - started:.0f} s "
              f"on {os.cpu_count()} CPUs")
    print(header)
    print(f"{'task':<26}{'random n':>9}" + "".join(f"{n[:14]:>15}" for n in names[1:]) + "   (labels ÷ random's)")
    for t in task_names:
        print(f"{t:<26}{results[t, 'random'][0]:>9.0f}" + "".join(f"{ratios[t, n]:>15.2f}" for n in names[1:]))
    print(f"\n{'strategy':<26}{'median':>8}{'worst':>8}{'worse':>7}{'noise+':>8}{'AULC':>8}{'median*':>9}")
    for n in names:
        m = summary[n]
        print(f"{n:<26}{m['median']:>8.2f}{m['worst']:>8.2f}{m['worse']:>7d}{m['worse_beyond_noise']:>8d}"
              f"{m['aulc']:>8.3f}{m['median_telling']:>9.2f}")
    print(f"(median*: over the tasks where random needs more than {START + 3 * BATCH} labels; noise+: of the "
          "tasks worse, those whose 90 % interval over seeds lies above 1.0)")
    floor = summary["random_2"]
    half = max((intervals[t, "random_2"][1] - intervals[t, "random_2"][0]) / 2 for t in task_names)
    # The interval narrows as 1/sqrt(seeds): the seeds that would bring the widest to +-0.05.
    enough = int(np.ceil(len(seeds) * (half / 0.05) ** 2))
    print(f"\nnoise floor: random_2 / random median {floor['median']:.2f}, worst {floor['worst']:.2f}; the widest "
          f"90 % interval of a task's ratio is +-{half:.2f} at {len(seeds)} seeds (+-0.05 would take about {enough})")
    default = summary.get("margin_coverage")
    if default:
        ok = default["median"] <= 0.6 and default["worst"] <= 1.1
        print(f"target for the default (median <= 0.6, no task above 1.1): {'met' if ok else 'NOT met'} "
              f"(median {default['median']:.2f}, worst {default['worst']:.2f})")
    if args.write_docs:
        write_docs(args.write_docs, markdown(results, task_names, names, header))
        print(f"tables written to {args.write_docs}")


if __name__ == "__main__":
    main()
