"""How fast the CNNs train and predict on this machine's CPU.

:func:`speed_benchmark` times, for each variant, one training fold (``n_train`` images,
the size of a fivefold fold of the bundled cohort) and inference, and prints a table:

- ``preprocess ms/img``: decoding, marker, leg mask and crop of one image (cold cache);
- ``train s/fold``: ``fit`` on ``n_train`` images with the crops already cached (what
  folds 2..5 of a cross-validation cost; fold 1 adds the preprocessing);
- ``infer img/s``: ``predict`` throughput with cached crops (channels + network), and
  ``end-to-end img/s`` from the file (decode included, cold cache).

Run it as ``python -m smi_deep.speed [DATASET] [--view lateral] [--threads 2]``
(``legsmi speed`` calls the same function).
"""

from __future__ import annotations

import os
import time



def speed_benchmark(dataset: str | os.PathLike | None = None, *, variants=("cnn-paper", "cnn-lite"),
                    view: str = "lateral", n_train: int = 80, n_infer: int | None = None, seed: int = 0,
                    n_threads: int | None = None, device: str = "cpu", epochs: int | None = None,
                    echo=print) -> list[dict]:
    """Time training and inference of each CNN variant; print and return one dict per variant.

    Parameters
    ----------
    dataset : path-like, optional
        Dataset folder (default: the bundled cohort).
    variants : sequence of str
    view : {'lateral', 'posterior', 'both'}
    n_train : int
        Training images per fold (80 = a fivefold fold of 100 subjects).
    n_infer : int, optional
        Images for inference timing (default: all samples).
    seed : int
    n_threads : int, optional
        torch CPU threads (default: :func:`smi_deep.regressor.default_threads`).
    device : str
        ``'cpu'`` (the point of this benchmark) or ``'auto'``.
    epochs : int, optional
        Override the variants' default epochs (e.g. a quick check).
    echo : callable
        Where lines go (``print``; ``click.echo`` from the CLI).

    Returns
    -------
    list of dict
        Keys: ``model``, ``view``, ``n_train``, ``epochs``, ``threads``, ``device``,
        ``preprocess_ms_per_image``, ``train_s_per_fold``, ``infer_images_per_s``,
        ``end_to_end_images_per_s``.
    """
    from smi_data.manifest import read_manifest, to_samples
    from smi_data.paths import BUNDLED_COHORT

    from .preprocess import clear_cache
    from .regressor import CNNRegressor, default_threads

    dataset = dataset or BUNDLED_COHORT
    samples = to_samples(read_manifest(dataset), view)
    if len(samples) < 2:
        raise ValueError(f"{dataset}: fewer than 2 {view} samples; cannot time training")
    y = samples["smi"].to_numpy(dtype=float)
    n_train = min(int(n_train), len(samples))
    train = samples.iloc[:n_train]
    infer = samples.iloc[: (len(samples) if n_infer is None else min(int(n_infer), len(samples)))]
    threads = int(n_threads) if n_threads else default_threads()
    n_images = len(infer) * (2 if view == "both" else 1)
    rows = []
    for name in variants:
        est = CNNRegressor(variant=name, random_state=seed, n_threads=threads, device=device, epochs=epochs)
        clear_cache()
        t = time.perf_counter()
        est._load(infer, est_views(infer), est._resolved()["crop"])
        prep = (time.perf_counter() - t) / max(1, n_images)
        est._load(train, est_views(train), est._resolved()["crop"])  # cache the training crops
        t = time.perf_counter()
        est.fit(train, y[:n_train])
        fit_s = time.perf_counter() - t
        est.predict(infer.iloc[: min(8, len(infer))])  # warm-up
        t = time.perf_counter()
        est.predict(infer)
        infer_s = time.perf_counter() - t
        clear_cache()
        t = time.perf_counter()
        est.predict(infer)
        e2e_s = time.perf_counter() - t
        rows.append({
            "model": name, "view": view, "n_train": n_train - len(est.failures_), "epochs": len(est.history_),
            "threads": threads, "device": est.device_, "preprocess_ms_per_image": 1e3 * prep,
            "train_s_per_fold": fit_s, "infer_images_per_s": n_images / infer_s,
            "end_to_end_images_per_s": n_images / e2e_s,
        })
    echo(f"CNN speed on {rows[0]['device'] if rows else device}, {threads} torch thread(s), view {view}, "
         f"{dataset}")
    echo(f"{'model':<10} {'epochs':>6} {'n_train':>7} {'preprocess ms/img':>18} {'train s/fold':>13} "
         f"{'infer img/s':>12} {'end-to-end img/s':>17}")
    for r in rows:
        echo(f"{r['model']:<10} {r['epochs']:>6d} {r['n_train']:>7d} {r['preprocess_ms_per_image']:>18.1f} "
             f"{r['train_s_per_fold']:>13.1f} {r['infer_images_per_s']:>12.1f} {r['end_to_end_images_per_s']:>17.1f}")
    return rows


def est_views(samples) -> tuple[str, ...]:
    from .regressor import sample_views

    return sample_views(samples)


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m smi_deep.speed", description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=None, help="dataset folder (default: the bundled cohort)")
    ap.add_argument("--view", default="lateral", choices=("lateral", "posterior", "both"))
    ap.add_argument("--models", default="cnn-paper,cnn-lite", help="comma-separated variants")
    ap.add_argument("--n-train", type=int, default=80)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    speed_benchmark(a.dataset, variants=tuple(a.models.split(",")), view=a.view, n_train=a.n_train,
                    n_threads=a.threads, epochs=a.epochs, seed=a.seed)


if __name__ == "__main__":
    main()
