"""Training throughput: geovae LiVAE vs scvi-tools scVI vs the authors' ``livae==0.2.1`` (issue #10).

Usage::

    .venv/bin/python benchmarks/bench_throughput.py [--quick] [--epochs 10] [--threads 2]
        [--repeats 1] [--datasets pbmc68k,sim] [--scvi-python /work/venvs/scvi/bin/python]
        [--livae-python /work/venvs/livae021/bin/python] [--workdir benchmarks/out/throughput]

Every tool trains on the same raw counts (``layers["counts"]``, all genes, no HVG step):
``pbmc68k`` (700 cells x 765 genes) and a simulated 20,000 cells x 2,000 genes
(``simulate_programs``; ``--quick``: 2,000 cells). Each run is a fresh subprocess of the
tool's own Python (``--threads`` torch/OpenMP threads, CPU), the tools run in turn
(``--repeats`` rounds, interleaved), and each reports:

* ``cells/s``: training cells x epochs / wall seconds of the training call alone
  (model construction, data loading and latent extraction excluded), median over rounds;
* ``NMI``/``ARI``: KMeans (k = number of labels, 10 restarts, seed 0) on the latent
  posterior means (``livae 0.2.1``: its ``get_latent()``, a posterior sample), against the labels;
  mean (sd) over rounds, round ``r`` training with seed ``--seed + r``.

Settings, equal where the tools allow: 128 hidden units, 10 latent dimensions, NB likelihood,
minibatch 128, Adam lr 1e-3, 90 % / 10 % train/validation split with validation every epoch,
no early stopping. LiVAE: the package defaults (bottleneck 2, Lorentz weight 10). livae 0.2.1
has no epoch loop (``fit`` draws one random minibatch per iteration and scores clustering after
each); it is timed on ``ceil(0.9 n / 128)`` calls of its ``update`` per epoch-equivalent
(``irecon=1, lorentz=10``, its log1p(counts) input).

``geovae`` runs the package default: the large float32 products of its layers in oneDNN
(``geovae.nn.Linear``) on CPUs with AVX-512 (where, on AMD, MKL's ``sgemm`` runs at about half
oneDNN's speed), torch's default BLAS otherwise; ``geovae_blas`` forces every product into the BLAS
and ``geovae_onednn`` the large ones into oneDNN, to show what each path contributes on this CPU.
``--tools geovae,scvi,geovae_bf16,scvi_bf16`` adds bfloat16-autocast runs of both (reported as
separate tools, since they change the numbers); ``geovae_dist`` is LiVAE with the authors' code's
geometric loss (mean Lorentz distance, ``lorentz_squared=False``) instead of the paper's eq. 6 (mean
squared distance, the default).

``geovae_api`` and ``scvi_api`` measure what a user gets (issue #24): raw counts in ``X`` and
``layers["counts"]``, no preprocessing, ``LiVAE.setup_anndata(a, layer="counts"); LiVAE(a).train(
max_epochs, batch_size=128, device="cpu")`` with every other option at its default (early stopping
on, validation every epoch), against ``SCVI(a, n_hidden=128, n_latent=10, gene_likelihood="nb")``
trained the same way; no import is warmed up outside the timed call. ``--datasets kidney,cbmc`` are
the real UMI sets of ``../shared/data/real``.

A missing venv is reported (with the command that creates it, see ``benchmarks/README.md``)
and that tool is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCVI_PYTHON = "/work/venvs/scvi/bin/python"
DEFAULT_LIVAE_PYTHON = "/work/venvs/livae021/bin/python"
VENV_HELP = {
    "scvi": "python3.11 -m venv /work/venvs/scvi && /work/venvs/scvi/bin/pip install torch==2.13.0 "
            "&& /work/venvs/scvi/bin/pip install scvi-tools scikit-learn",
    "livae021": "python3.11 -m venv /work/venvs/livae021 && /work/venvs/livae021/bin/pip install torch==2.13.0 "
                "&& /work/venvs/livae021/bin/pip install --no-deps livae==0.2.1 && /work/venvs/livae021/bin/pip "
                "install 'numpy>=1.26,<1.27' 'scipy>=1.12,<1.13' 'scikit-learn>=1.5,<1.6' 'anndata>=0.10,<0.11' "
                "'pandas>=2.2,<2.3' 'tqdm>=4.66,<5'",
}
BATCH_SIZE, N_HIDDEN, N_LATENT, LR, VAL_FRACTION = 128, 128, 10, 1e-3, 0.1
#: Real UMI sets of ../shared/data/real (raw counts in X, 2,000 genes, labels in obs["cell_type_id"]).
REAL_DIR = ROOT.parent / "shared" / "data" / "real"
REAL = {"kidney": "human_kidney_top2000.h5ad", "cbmc": "cbmc_citeseq_top2000.h5ad"}
DATASET_CHOICES = ("pbmc68k", "sim", *REAL)


# ----------------------------------------------------------------------- worker side
def _set_threads(threads: int, warm: bool = True) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    if warm:
        # the first optimizer of a process imports torch._dynamo (seconds); every tool pays it here,
        # outside the timed training call (not the API tools: a user's first train() pays it)
        import torch._dynamo  # noqa: F401


def _cluster_scores(latent: Any, labels: Any) -> dict[str, float]:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.asarray(labels)
    k = len(np.unique(labels))
    pred = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(np.asarray(latent, dtype=np.float64))
    return {"nmi": float(normalized_mutual_info_score(labels, pred)), "ari": float(adjusted_rand_score(labels, pred))}


def _run_geovae(adata: Any, epochs: int, seed: int, cpu_amp: bool = False,
                lorentz_squared: bool = True, onednn: bool | None = None) -> tuple[float, Any]:
    from geovae.models.livae import LiVAE
    from geovae.nn import set_onednn_linear
    from geovae.preprocessing.input import set_model_input
    from geovae.preprocessing.rna import log_normalize

    set_onednn_linear(onednn)
    log_normalize(adata)
    set_model_input(adata, "rna")
    LiVAE.setup_anndata(adata, layer="counts")
    model = LiVAE(adata, latent_dim=N_LATENT, hidden_dim=N_HIDDEN, likelihood="nb", lorentz_squared=lorentz_squared)
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=BATCH_SIZE, lr=LR, device="cpu", early_stopping=False,
                validation_fraction=VAL_FRACTION, seed=seed, progress_bar=False, cpu_amp=cpu_amp)
    if cpu_amp and model.metadata.get("amp") != "bfloat16":
        raise SystemExit("geovae_bf16: this CPU has no native bfloat16 (cpu_amp fell back to float32)")
    seconds = time.perf_counter() - t0
    return seconds, model.get_latent_representation()


def _run_scvi(adata: Any, epochs: int, seed: int, precision: str = "32-true") -> tuple[float, Any]:
    import scvi

    scvi.settings.seed = seed
    scvi.settings.dl_num_workers = 0
    scvi.model.SCVI.setup_anndata(adata, layer="counts")
    model = scvi.model.SCVI(adata, n_hidden=N_HIDDEN, n_latent=N_LATENT, gene_likelihood="nb")
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=BATCH_SIZE, accelerator="cpu", devices=1, train_size=1 - VAL_FRACTION,
                early_stopping=False, check_val_every_n_epoch=1, enable_progress_bar=False,
                plan_kwargs={"lr": LR}, precision=precision)
    seconds = time.perf_counter() - t0
    return seconds, model.get_latent_representation()


def _run_livae021(adata: Any, epochs: int, seed: int) -> tuple[float, Any]:
    import numpy as np
    import torch
    from livae import agent

    np.random.seed(seed)
    torch.manual_seed(seed)
    n_train = int(round((1 - VAL_FRACTION) * adata.n_obs))
    model = agent(adata, layer="counts", percent=BATCH_SIZE / adata.n_obs, irecon=1.0, lorentz=10.0,
                  hidden_dim=N_HIDDEN, latent_dim=N_LATENT, lr=LR, device=torch.device("cpu"))
    steps = math.ceil(n_train / BATCH_SIZE) * epochs
    t0 = time.perf_counter()
    for _ in range(steps):
        model.update(model.load_data())
    seconds = time.perf_counter() - t0
    return seconds, model.get_latent()


def _run_geovae_api(adata: Any, epochs: int, seed: int) -> tuple[float, Any]:
    """What a user writes: raw counts in ``X`` and ``layers["counts"]``, no preprocessing, defaults
    (early stopping on, validation every epoch), timed around ``train`` alone."""
    from geovae.models.livae import LiVAE

    LiVAE.setup_anndata(adata, layer="counts")
    model = LiVAE(adata)
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=BATCH_SIZE, device="cpu", seed=seed, progress_bar=False)
    seconds = time.perf_counter() - t0
    return seconds, model.get_latent_representation()


def _run_scvi_api(adata: Any, epochs: int, seed: int) -> tuple[float, Any]:
    """scVI as the issue trains it: ``SCVI(n_hidden=128, n_latent=10, gene_likelihood="nb")``, its defaults."""
    import scvi

    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(adata, layer="counts")
    model = scvi.model.SCVI(adata, n_hidden=N_HIDDEN, n_latent=N_LATENT, gene_likelihood="nb")
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=BATCH_SIZE, accelerator="cpu", devices=1, enable_progress_bar=False)
    seconds = time.perf_counter() - t0
    return seconds, model.get_latent_representation()


#: Tools measured as a user meets them: no warm-up import outside the timed call, package defaults.
API_TOOLS = {"geovae_api", "scvi_api"}

RUNNERS = {"geovae": _run_geovae, "scvi": _run_scvi, "livae021": _run_livae021,
           "geovae_api": _run_geovae_api, "scvi_api": _run_scvi_api,
           # bfloat16 autocast on CPUs with native bf16 (geovae: train(cpu_amp=True); scVI: Lightning
           # precision="bf16-mixed"); both change the numbers, so they are reported as separate tools
           "geovae_bf16": lambda adata, epochs, seed: _run_geovae(adata, epochs, seed, cpu_amp=True),
           "scvi_bf16": lambda adata, epochs, seed: _run_scvi(adata, epochs, seed, precision="bf16-mixed"),
           # LiVAE with the geometric loss of the authors' code (mean distance instead of the paper's
           # mean squared distance, ``lorentz_squared=False``): same speed, other embedding
           "geovae_dist": lambda adata, epochs, seed: _run_geovae(adata, epochs, seed, lorentz_squared=False),
           # LiVAE with every product in torch's default BLAS (MKL in the CPU wheels), also on CPUs with
           # AVX-512 where geovae.nn.Linear sends the large ones to oneDNN: what the oneDNN path contributes
           "geovae_blas": lambda adata, epochs, seed: _run_geovae(adata, epochs, seed, onednn=False),
           # and every large product in oneDNN whatever the CPU (the default takes it only with AVX-512)
           "geovae_onednn": lambda adata, epochs, seed: _run_geovae(adata, epochs, seed, onednn=True)}


def worker(args: argparse.Namespace) -> None:
    """Train one tool on one dataset and print one JSON line."""
    _set_threads(args.threads, warm=args.worker not in API_TOOLS)
    import anndata as ad
    import numpy as np

    adata = ad.read_h5ad(args.data)
    labels = adata.obs["label"].to_numpy()
    seconds, latent = RUNNERS[args.worker](adata, args.epochs, args.seed)
    n_train = int(round((1 - VAL_FRACTION) * adata.n_obs))
    out = {"tool": args.worker, "epochs": args.epochs, "seconds": seconds,
           "cells_per_s": n_train * args.epochs / seconds, **_cluster_scores(np.asarray(latent), labels)}
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------- driver side
def _datasets(quick: bool, workdir: Path, wanted: set[str]) -> dict[str, Path]:
    """Write the wanted benchmark datasets (raw counts in layers["counts"], obs["label"]) once."""
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np
    import scipy.sparse as sp

    from geovae.data.builtin import load_builtin
    from geovae.data.simulate import simulate_programs

    workdir.mkdir(parents=True, exist_ok=True)
    n_sim = 2000 if quick else 20000
    paths = {"pbmc68k": workdir / "pbmc68k.h5ad", f"sim_{n_sim}x2000": workdir / f"sim_{n_sim}x2000.h5ad",
             **{name: workdir / f"{name}.h5ad" for name in REAL}}
    paths = {name: path for name, path in paths.items() if name.split("_")[0] in wanted}
    for name, path in list(paths.items()):
        if path.exists():
            continue
        if name == "pbmc68k":
            adata = load_builtin("pbmc68k")
            adata.obs["label"] = adata.obs["bulk_labels"].astype(str)
        elif name in REAL:
            import anndata as ad

            source = REAL_DIR / REAL[name]
            if not source.exists():
                print(f"[skip] {name}: {source} not found (../shared/data/real)", flush=True)
                del paths[name]
                continue
            adata = ad.read_h5ad(source)
            adata.obs["label"] = adata.obs["cell_type_id"].astype(str)
        else:
            adata = simulate_programs(n_cells=n_sim, n_genes=2000, seed=0)
            adata.obs["label"] = adata.obs["group"].astype(str)
        counts = sp.csr_matrix(adata.X, dtype=np.float32)
        keep = np.asarray(counts.sum(axis=1)).ravel() > 0
        adata = adata[keep].copy()
        adata.layers["counts"] = sp.csr_matrix(adata.X, dtype=np.float32)
        adata.obs = adata.obs[["label"]]
        adata.uns = {}
        adata.obsm = {}
        adata.write_h5ad(path)
    return paths


def _python_for(tool: str, args: argparse.Namespace) -> str | None:
    path = {"geovae": sys.executable, "scvi": args.scvi_python, "livae021": args.livae_python,
            "geovae_bf16": sys.executable, "scvi_bf16": args.scvi_python, "geovae_dist": sys.executable,
            "geovae_blas": sys.executable, "geovae_onednn": sys.executable, "geovae_api": sys.executable, "scvi_api": args.scvi_python}[tool]
    if not Path(path).exists():
        print(f"[skip] {tool}: no Python at {path}. Create the venv with:\n    {VENV_HELP[tool.split('_')[0]]}",
              flush=True)
        return None
    return path


def _run_one(python: str, tool: str, data: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    cmd = [python, str(Path(__file__).resolve()), "--worker", tool, "--data", str(data),
           "--epochs", str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = str(ROOT / "src") if tool.startswith("geovae") else ""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"[fail] {tool} on {data.name} (exit {proc.returncode}):\n{proc.stderr[-2000:]}", flush=True)
        return None
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 simulated cells, 2 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 10; quick: 2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=1,
                        help="interleaved rounds over the tools; round r trains with seed --seed + r")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tools", default="geovae,scvi,livae021",
                        help="comma-separated, from: geovae, scvi, livae021, the bfloat16 variants "
                             "geovae_bf16, scvi_bf16 (CPUs with native bf16), and geovae_dist (LiVAE with "
                             "lorentz_squared=False), geovae_blas / geovae_onednn (LiVAE with all products in "
                             "torch's default BLAS / the large ones in oneDNN, whatever the CPU), and the public-API pair geovae_api, scvi_api "
                             "(each package's plain call and defaults on raw counts; ratio against scvi_api)")
    parser.add_argument("--datasets", default="pbmc68k,sim",
                        help="comma-separated, from: pbmc68k, sim (the simulated 20,000 x 2,000 set), kidney, "
                             "cbmc (the real UMI sets of ../shared/data/real)")
    parser.add_argument("--scvi-python", default=DEFAULT_SCVI_PYTHON)
    parser.add_argument("--livae-python", default=DEFAULT_LIVAE_PYTHON)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "throughput")
    parser.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 10
    if args.worker:
        worker(args)
        return

    tools = [t for t in args.tools.split(",") if t]
    pythons = {t: _python_for(t, args) for t in tools}
    wanted = {d for d in args.datasets.split(",") if d}
    if not wanted or not wanted <= set(DATASET_CHOICES):
        parser.error(f"--datasets: choose from {', '.join(DATASET_CHOICES)} (got {args.datasets!r})")
    paths = _datasets(args.quick, args.workdir, wanted)
    print(f"# {args.epochs} epochs, batch {BATCH_SIZE}, {args.threads} thread(s), {args.repeats} round(s)")
    print("# cells/s and seconds: median over rounds; NMI/ARI: mean (sd) over rounds (seeds "
          f"{args.seed}..{args.seed + args.repeats - 1})")
    print(f"{'dataset':<16} {'tool':<10} {'seconds':>8} {'cells/s':>9} {'vs scVI':>8} {'NMI':>13} {'ARI':>13}")
    rows = []
    base_seed = args.seed
    for name, path in paths.items():
        results: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
        for round_ in range(args.repeats):
            args.seed = base_seed + round_
            for tool in tools:
                if pythons[tool] is not None:
                    res = _run_one(pythons[tool], tool, path, args)
                    if res is not None:
                        results[tool].append(res)
        args.seed = base_seed
        speed = {t: sorted(r["cells_per_s"] for r in rs)[len(rs) // 2] for t, rs in results.items() if rs}
        for tool, rs in results.items():
            if not rs:
                continue
            med = sorted(rs, key=lambda r: r["cells_per_s"])[len(rs) // 2]
            base = "scvi_api" if tool in API_TOOLS else "scvi"
            ratio = f"{speed[tool] / speed[base]:.2f}x" if base in speed else "n/a"
            quality = {key: (statistics.mean(r[key] for r in rs),
                             statistics.stdev(r[key] for r in rs) if len(rs) > 1 else 0.0) for key in ("nmi", "ari")}
            print(f"{name:<16} {tool:<10} {med['seconds']:>8.1f} {med['cells_per_s']:>9.0f} {ratio:>8} "
                  + " ".join(f"{m:>6.3f} ({sd:.3f})" for m, sd in quality.values()), flush=True)
            rows.append({"dataset": name, "tool": tool, "rounds": rs, "cells_per_s": speed[tool],
                         "vs_scvi": speed[tool] / speed[base] if base in speed else None,
                         "nmi_mean": quality["nmi"][0], "nmi_sd": quality["nmi"][1],
                         "ari_mean": quality["ari"][0], "ari_sd": quality["ari"][1]})
    (args.workdir / "throughput.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
