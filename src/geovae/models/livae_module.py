"""LiVAE network and loss (paper sections 2.2-2.4, eq. 2).

The module is pure torch: it takes a ready model-input batch ``x`` (normalised,
optionally z-scored) plus the raw ``counts`` of the same cells and returns named loss
terms. Data handling lives in :mod:`geovae.training`, the user API in :mod:`geovae.models.livae`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..nn.onednn_linear import Linear
from .fused_nb import softmax_nb_log_likelihood
from .likelihoods import LIKELIHOODS, log_likelihood, sparse_log_likelihood_sum
from .lorentz import DEFAULT_MAX_TANGENT_NORM, tangent_lorentz_distance

__all__ = ["LiVAEModule", "GEOMETRIES", "REGULARIZATIONS", "RECONSTRUCTIONS", "LOSS_TERMS"]

GEOMETRIES = ("lorentz", "euclidean")
#: ``bottleneck``: geometric loss between z and its bottleneck reconstruction l_d (the paper).
#: ``two_views``: geometric loss between two independent reparameterised samples of z
#: (a bottleneck-free consistency regulariser for ablations).
REGULARIZATIONS = ("bottleneck", "two_views")
#: Reconstruction paths in the loss (paper section 3.6 ablations): ``both`` (eq. 2),
#: ``without_main`` (drop NLL(x | z)) or ``without_bottleneck`` (drop NLL(x | l_d)).
RECONSTRUCTIONS = ("both", "without_main", "without_bottleneck")
#: Keys of the dict returned by :meth:`LiVAEModule.forward`.
LOSS_TERMS = ("recon", "recon_bn", "kl", "geo", "total")

_LOGVAR_RANGE = (-15.0, 15.0)  # keeps exp(logvar) finite early in training
#: Batch keys of the non-zero counts (:data:`geovae.training.data.NZ_INDEX` / ``NZ_VALUE``),
#: the optional feature index of each (``NZ_FEATURE``) and the dataset's integer flag (``NZ_INTEGER``).
_NZ_KEYS = ("counts_nz_index", "counts_nz_value")
_NZ_FEATURE_KEY = "counts_nz_feature"
_NZ_INTEGER_KEY = "counts_nz_integer"

#: The non-zero counts of a minibatch: flat row-major positions (int64) and values, optionally
#: followed by the feature (column) of each and whether all values are positive integers (a bool).
SparseCounts = tuple[Any, ...]


def _feature(counts_nz: SparseCounts) -> torch.Tensor | None:
    """The feature index of each non-zero when the batch carries it (``NZ_FEATURE``), else None."""
    return counts_nz[2] if len(counts_nz) > 2 else None


def _positive_integers(counts_nz: SparseCounts) -> bool | None:
    """Whether the batch's non-zero counts are known to be positive integers (None: unknown)."""
    return counts_nz[3] if len(counts_nz) > 3 else None


def _mlp_block(n_in: int, n_hidden: int) -> nn.Sequential:
    return nn.Sequential(Linear(n_in, n_hidden), nn.LayerNorm(n_hidden), nn.ReLU())


class LiVAEModule(nn.Module):
    """Lorentz-regularised VAE with an information-bottleneck path.

    Parameters
    ----------
    n_input
        Number of features (genes or peaks).
    latent_dim
        Dimension ``d`` of z (paper: 10).
    hidden_dim
        Width of the single hidden layer of encoder and decoder (paper: 128).
    bottleneck_dim
        Dimension ``d_bn`` of the compressed code ``l_e`` (paper: 2).
    likelihood
        ``"nb"``, ``"zinb"``, ``"poisson"`` or ``"zip"``.
    use_bottleneck
        If False there is no bottleneck path: ``recon_bn = 0`` and, with
        ``regularization="bottleneck"``, ``geo = 0`` (a plain VAE).
    geometry
        ``"lorentz"`` (distance on the hyperboloid after :func:`expmap0`) or
        ``"euclidean"`` (plain Euclidean distance) for the geometric loss.
    lorentz_weight
        Weight of the geometric loss (paper: 10).
    lorentz_squared
        Average the squared distance (paper eq. 6) when True, the distance itself when
        False (the authors' code). Applies to either geometry.
    w_recon, w_bn_recon, beta_kl
        Weights of the primary reconstruction, bottleneck reconstruction and KL terms.
    regularization
        ``"bottleneck"`` or ``"two_views"``, see :data:`REGULARIZATIONS`.
    max_tangent_norm
        Norm clamp of :func:`expmap0`.
    reconstruction
        Which reconstruction terms enter the loss, see :data:`RECONSTRUCTIONS` (both are
        still computed and logged).
    """

    def __init__(
        self,
        n_input: int,
        latent_dim: int = 10,
        hidden_dim: int = 128,
        bottleneck_dim: int = 2,
        likelihood: str = "nb",
        use_bottleneck: bool = True,
        geometry: str = "lorentz",
        lorentz_weight: float = 10.0,
        lorentz_squared: bool = True,
        w_recon: float = 1.0,
        w_bn_recon: float = 1.0,
        beta_kl: float = 1.0,
        regularization: str = "bottleneck",
        max_tangent_norm: float = DEFAULT_MAX_TANGENT_NORM,
        reconstruction: str = "both",
    ) -> None:
        super().__init__()
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction={reconstruction!r} is not one of {RECONSTRUCTIONS}")
        if reconstruction == "without_bottleneck" and not use_bottleneck:
            raise ValueError("reconstruction='without_bottleneck' needs use_bottleneck=True")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={likelihood!r} is not one of {LIKELIHOODS}")
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry={geometry!r} is not one of {GEOMETRIES}")
        if regularization not in REGULARIZATIONS:
            raise ValueError(f"regularization={regularization!r} is not one of {REGULARIZATIONS}")
        for name, value in (("n_input", n_input), ("latent_dim", latent_dim),
                            ("hidden_dim", hidden_dim), ("bottleneck_dim", bottleneck_dim)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.n_input = int(n_input)
        self.latent_dim = int(latent_dim)
        self.bottleneck_dim = int(bottleneck_dim)
        self.likelihood = likelihood
        self.use_bottleneck = bool(use_bottleneck)
        self.geometry = geometry
        self.lorentz_weight = float(lorentz_weight)
        self.lorentz_squared = bool(lorentz_squared)
        self.w_recon = float(w_recon)
        self.w_bn_recon = float(w_bn_recon)
        self.beta_kl = float(beta_kl)
        self.regularization = regularization
        self.max_tangent_norm = float(max_tangent_norm)
        self.reconstruction = reconstruction

        # encoder: x -> hidden -> (mu, logvar)
        self.encoder = _mlp_block(n_input, hidden_dim)
        self.enc_mu = Linear(hidden_dim, latent_dim)
        self.enc_logvar = Linear(hidden_dim, latent_dim)
        # bottleneck path: z -> l_e (compress) -> l_d (expand)
        if self.use_bottleneck:
            self.bn_compress = Linear(latent_dim, bottleneck_dim)
            self.bn_expand = Linear(bottleneck_dim, latent_dim)
        # shared decoder: latent -> hidden -> softmax over features (rho)
        self.decoder = _mlp_block(latent_dim, hidden_dim)
        self.dec_rho = Linear(hidden_dim, n_input)
        if likelihood in ("zinb", "zip"):
            self.dec_zi = Linear(hidden_dim, n_input)
        if likelihood in ("nb", "zinb"):
            # gene-specific log inverse dispersion; theta = exp(log_theta)
            self.log_theta = nn.Parameter(torch.zeros(n_input))

    # ------------------------------------------------------ batch conditioning
    n_batch: int = 0
    _batch_code: torch.Tensor | None = None

    def add_batch_conditioning(self, n_batch: int) -> None:
        """Condition the decoder on a one-hot batch code of width ``n_batch``, as scVI does by default.

        The decoder's first layer (input ``z``) is rebuilt with ``n_batch`` more inputs (freshly
        initialised: call before training); during :meth:`conditioned_on` the code is appended to
        its input, so the decoder explains the batch effect and the KL term keeps it out of ``z``.
        The encoder sees ``x`` only (scVI's ``encode_covariates=False``): on a simulated two-batch
        set, also conditioning the encoder mixed the batches less (iLISI 1.58 vs 1.77 after 150
        epochs; ``tests/test_batch_conditioning.py`` builds that set).

        Parameters
        ----------
        n_batch
            Number of batches (>= 2).
        """
        if n_batch < 2:
            raise ValueError(f"batch conditioning needs at least 2 batches, got {n_batch}")
        first = self.decoder[0]
        self.decoder[0] = Linear(first.in_features + n_batch, first.out_features)
        self.n_batch = int(n_batch)

    @contextlib.contextmanager
    def conditioned_on(self, batch_code: torch.Tensor | None) -> Iterator[None]:
        """Within the block, the decoder sees ``batch_code`` (``n x n_batch`` one-hot rows of the
        cells being decoded); a module without batch conditioning ignores it."""
        if self.n_batch and batch_code is None:
            raise ValueError(f"this {type(self).__name__} is conditioned on {self.n_batch} batches: "
                             "its batches need the one-hot 'batch' code")
        previous, self._batch_code = self._batch_code, batch_code if self.n_batch else None
        try:
            yield
        finally:
            self._batch_code = previous

    def _with_batch(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` with the current batch code appended (rows repeated for stacked decoder paths)."""
        if not self.n_batch:
            return h
        code = self._batch_code.to(h.dtype)
        if h.shape[0] != code.shape[0]:
            code = code.repeat(h.shape[0] // code.shape[0], 1)
        return torch.cat([h, code], dim=-1)

    def _decoder_hidden(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._with_batch(z))

    # ----------------------------------------------------------------- pieces
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logvar)`` of ``q(z | x)``, each ``(n, latent_dim)``."""
        h = self.encoder(x)
        logvar = torch.clamp(self.enc_logvar(h), *_LOGVAR_RANGE)
        return self.enc_mu(h), logvar

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterised sample ``mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def bottleneck(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compressed code ``l_e`` (``n x bottleneck_dim``) and its expansion ``l_d`` (``n x latent_dim``)."""
        if not self.use_bottleneck:
            raise RuntimeError("this LiVAEModule was built with use_bottleneck=False")
        l_e = self.bn_compress(z)
        return l_e, self.bn_expand(l_e)

    def decode(self, z: torch.Tensor, library: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoder outputs for latent codes ``z`` and library sizes ``library`` (``n x 1``).

        Returns
        -------
        dict
            ``rho`` (softmax proportions), ``mu`` (= rho * library), and where the
            likelihood needs them ``theta`` (per feature) and ``zi_logits``. Always float32.
        """
        h = self._decoder_hidden(z)
        rho = torch.softmax(self.dec_rho(h).float(), dim=-1)
        out = {"rho": rho, "mu": rho * library.float()}
        if self.likelihood in ("nb", "zinb"):
            out["theta"] = torch.exp(self.log_theta.float())
        if self.likelihood in ("zinb", "zip"):
            out["zi_logits"] = self.dec_zi(h).float()
        return out

    def _neg_log_lik(self, counts: torch.Tensor, px: Mapping[str, torch.Tensor],
                     counts_nz: SparseCounts | None = None) -> torch.Tensor:
        """Negative log-likelihood of ``counts``, summed over features and averaged over cells.

        With ``counts_nz`` (the non-zero entries of ``counts``, as in the training batches)
        the same value comes from :func:`~geovae.models.likelihoods.sparse_log_likelihood_sum`,
        which evaluates the expensive terms at the non-zeros only.
        """
        with torch.autocast(device_type=px["mu"].device.type, enabled=False):  # likelihoods in float32
            if counts_nz is not None:
                ll = sparse_log_likelihood_sum(self.likelihood, counts_nz[0], counts_nz[1], px["mu"],
                                               px.get("theta"), px.get("zi_logits"), nz_feature=_feature(counts_nz))
                return -ll / px["mu"].shape[0]
            ll = log_likelihood(self.likelihood, counts.float(), px["mu"], px.get("theta"), px.get("zi_logits"))
            return -ll.sum(dim=-1).mean()

    @staticmethod
    def _batch_nz(batch: Mapping[str, torch.Tensor]) -> SparseCounts | None:
        """The batch's non-zero counts (``counts_nz_index``, ``counts_nz_value``, and where present
        ``counts_nz_feature`` and the ``counts_nz_integer`` flag as a bool), or None."""
        if not all(key in batch for key in _NZ_KEYS):
            return None
        if _NZ_FEATURE_KEY not in batch:
            return batch[_NZ_KEYS[0]], batch[_NZ_KEYS[1]]
        flag = batch.get(_NZ_INTEGER_KEY)
        # read only where it costs no device synchronisation
        integer = bool(flag.reshape(-1)[0]) if flag is not None and flag.device.type == "cpu" else None
        return batch[_NZ_KEYS[0]], batch[_NZ_KEYS[1]], batch[_NZ_FEATURE_KEY], integer

    def _fused_nb_ok(self, counts_nz: SparseCounts | None) -> bool:
        """True when the NB likelihood can use :func:`~geovae.models.fused_nb.softmax_nb_log_likelihood`:
        sparse counts given, per-feature theta, and neither ``decode`` nor ``_neg_log_lik`` overridden."""
        cls = type(self)
        return (counts_nz is not None and self.likelihood == "nb" and cls.decode is LiVAEModule.decode
                and cls._neg_log_lik is LiVAEModule._neg_log_lik)

    def reconstruction_nlls(self, latents: list[torch.Tensor], counts: torch.Tensor, library: torch.Tensor,
                            counts_nz: SparseCounts | None = None) -> list[torch.Tensor]:
        """``_neg_log_lik`` of ``decode(z)`` for each ``z`` in ``latents``, with one decoder pass.

        The decoder is row-wise, so decoding the stacked rows equals separate calls (up to
        float rounding) with fewer kernel launches. With ``counts_nz`` the paths are scored in
        one likelihood call sharing the count-only ``lgamma`` terms; for NB that call is the
        fused softmax + NB function with a closed-form backward
        (:mod:`geovae.models.fused_nb`), which gives the same values and gradients.

        Parameters
        ----------
        latents
            Latent codes, each ``(n, latent_dim)`` (e.g. ``[z, l_d]`` for LiVAE's two paths).
        counts, library, counts_nz
            As in :meth:`forward`.

        Returns
        -------
        list of torch.Tensor
            One scalar NLL per latent (summed over features, mean over cells).
        """
        n, n_paths = latents[0].shape[0], len(latents)
        stacked = latents[0] if n_paths == 1 else torch.cat(latents, dim=0)
        if self._fused_nb_ok(counts_nz):
            logits = self.dec_rho(self._decoder_hidden(stacked)).float().reshape(n_paths, n, -1)
            ll = softmax_nb_log_likelihood(logits, library, self.log_theta, counts_nz[0], counts_nz[1],
                                           _feature(counts_nz), positive_integers=_positive_integers(counts_nz))
            return [-ll[p] / n for p in range(n_paths)]
        px = self.decode(stacked, library if n_paths == 1 else library.repeat(n_paths, 1))
        if n_paths == 1:
            return [self._neg_log_lik(counts, px, counts_nz)]
        shared_theta = px.get("theta") is None or px["theta"].dim() == 1
        if counts_nz is not None and shared_theta and type(self)._neg_log_lik is LiVAEModule._neg_log_lik:
            def paths(key: str) -> torch.Tensor | None:
                value = px.get(key)
                return None if value is None else value.reshape(n_paths, n, -1)

            with torch.autocast(device_type=stacked.device.type, enabled=False):
                ll = sparse_log_likelihood_sum(self.likelihood, counts_nz[0], counts_nz[1], paths("mu"),
                                               px.get("theta"), paths("zi_logits"), nz_feature=_feature(counts_nz))
            return [-ll[p] / n for p in range(n_paths)]
        out = []
        for p in range(n_paths):
            rows = slice(p * n, (p + 1) * n)
            # one row per cell: take this path's rows; per-feature outputs (theta) are shared
            part = {key: value[rows] if value.dim() >= 2 and value.shape[0] == n_paths * n else value
                    for key, value in px.items()}
            out.append(self._neg_log_lik(counts, part, counts_nz))
        return out

    @staticmethod
    def _library(counts: torch.Tensor | None, library: torch.Tensor | None,
                 counts_nz: SparseCounts | None) -> torch.Tensor:
        """``library``, or the row sums of ``counts`` when it is None; ``counts`` may be None only
        when ``library`` and ``counts_nz`` are given."""
        if counts is None and (counts_nz is None or library is None):
            raise ValueError("counts=None needs both counts_nz and library")
        return counts.sum(dim=-1, keepdim=True) if library is None else library

    def _geo(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.float(), b.float()
        if self.geometry == "lorentz":
            dist = tangent_lorentz_distance(a, b, self.max_tangent_norm)  # = lorentz_distance(expmap0(a), expmap0(b))
            return (dist**2).mean() if self.lorentz_squared else dist.mean()
        sq = ((a - b) ** 2).sum(dim=-1)
        return sq.mean() if self.lorentz_squared else torch.sqrt(sq + 1e-12).mean()

    # ------------------------------------------------------------------- loss
    def forward(
        self, x: torch.Tensor, counts: torch.Tensor | None, library: torch.Tensor | None = None,
        counts_nz: SparseCounts | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms for one minibatch (paper eq. 2).

        Parameters
        ----------
        x
            Model input ``(n, n_input)``.
        counts
            Raw counts ``(n, n_input)`` that the likelihood scores; may be None when
            ``counts_nz`` and ``library`` are given.
        library
            Library sizes ``(n, 1)``; row sums of ``counts`` when None.
        counts_nz
            Optional non-zero entries of ``counts`` (flat positions, values): same loss,
            computed faster (see :meth:`_neg_log_lik`).

        Returns
        -------
        dict
            Scalars ``recon`` (NLL of the primary path, summed over features, mean over
            cells), ``recon_bn`` (same for the bottleneck path), ``kl`` (summed over latent
            dimensions, mean over cells), ``geo`` (unweighted geometric loss) and
            ``total = w_recon*recon + w_bn_recon*recon_bn + beta_kl*kl + lorentz_weight*geo``.
        """
        library = self._library(counts, library, counts_nz)
        mu, logvar = self.encode(x)
        z = self.sample(mu, logvar)
        zero = torch.zeros((), device=x.device, dtype=torch.float32)

        kl = (0.5 * (mu.float() ** 2 + torch.exp(logvar.float()) - logvar.float() - 1.0)).sum(dim=-1).mean()

        recon_bn, geo = zero, zero
        if self.use_bottleneck:
            _, l_d = self.bottleneck(z)
            recon, recon_bn = self.reconstruction_nlls([z, l_d], counts, library, counts_nz)
            if self.regularization == "bottleneck":
                geo = self._geo(z, l_d)
        else:
            (recon,) = self.reconstruction_nlls([z], counts, library, counts_nz)
        if self.regularization == "two_views":
            geo = self._geo(z, self.sample(mu, logvar))

        total = self.beta_kl * kl
        if self.reconstruction != "without_main":
            total = total + self.w_recon * recon
        if self.use_bottleneck and self.reconstruction != "without_bottleneck":
            total = total + self.w_bn_recon * recon_bn
        if self.lorentz_weight != 0.0:
            total = total + self.lorentz_weight * geo
        return {"recon": recon, "recon_bn": recon_bn, "kl": kl, "geo": geo, "total": total}

    def loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`forward` on a batch dict with keys ``x``, ``counts`` and optionally ``library``
        and the non-zero counts (``counts_nz_index``, ``counts_nz_value``)."""
        counts_nz = self._batch_nz(batch)
        with self.conditioned_on(batch.get("batch")):
            return self(batch["x"], self._dense_counts(batch, counts_nz), batch.get("library"), counts_nz)

    def _dense_counts(self, batch: Mapping[str, torch.Tensor], counts_nz: SparseCounts | None) -> torch.Tensor | None:
        """The batch's dense ``counts``, or None where the loss works from ``counts_nz`` and
        ``library`` alone (so a :class:`~geovae.training.data.LazyBatch` never builds them)."""
        if counts_nz is not None and "library" in batch and type(self)._neg_log_lik is LiVAEModule._neg_log_lik:
            return None
        return batch["counts"]
