"""The neutral VAE module that every count-likelihood model of the zoo extends.

Encoder ``x -> (mu, logvar)`` (one hidden layer, LayerNorm, ReLU), reparameterised sampling, a decoder
``z -> softmax proportions`` scaled by the library size, and the count likelihoods (NB, ZINB, Poisson,
ZIP) scored from the non-zero counts (fused softmax + NB on the CPU), optional batch conditioning of
the decoder. LiVAE (:mod:`geovae.modules.livae`) adds its bottleneck path and geometric loss, the
beta-VAE family (:mod:`geovae.modules.betavae`) its regularisers, dp-VAE (:mod:`geovae.modules.dpvae`)
the distance-preserving loss. The module is pure torch: data handling lives in
:mod:`geovae.training`, the user API in :mod:`geovae.models`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..distributions.fused_nb import softmax_nb_log_likelihood
from ..distributions.likelihoods import LIKELIHOODS, log_likelihood, sparse_log_likelihood_sum
from ..nn.onednn_linear import Linear

__all__ = ["VAEModule", "SparseCounts", "mlp_block"]

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


def mlp_block(n_in: int, n_hidden: int) -> nn.Sequential:
    return nn.Sequential(Linear(n_in, n_hidden), nn.LayerNorm(n_hidden), nn.ReLU())


class VAEModule(nn.Module):
    """A VAE for counts: encoder, decoder and likelihood, with loss ``recon + kl``.

    Parameters
    ----------
    n_input
        Number of features (genes or peaks).
    latent_dim
        Dimension of z.
    hidden_dim
        Width of the single hidden layer of encoder and decoder.
    likelihood
        ``"nb"``, ``"zinb"``, ``"poisson"`` or ``"zip"``.

    The defaults (10, 128, ``"nb"``: the LiVAE paper's, section 2.7) are the ones of every model
    built on this module; a subclass takes them through ``**vae``.

    Notes
    -----
    Layers are created encoder first, then whatever :meth:`_build_latent_path` adds (LiVAE's
    bottleneck), then the decoder: with a fixed seed a subclass gets the same initial weights as
    when it built them itself in that order.
    """

    def __init__(self, n_input: int, latent_dim: int = 10, hidden_dim: int = 128, likelihood: str = "nb") -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={likelihood!r} is not one of {LIKELIHOODS}")
        for name, value in (("n_input", n_input), ("latent_dim", latent_dim), ("hidden_dim", hidden_dim)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.n_input = int(n_input)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        # encoder: x -> hidden -> (mu, logvar)
        self.encoder = mlp_block(n_input, hidden_dim)
        self.enc_mu = Linear(hidden_dim, latent_dim)
        self.enc_logvar = Linear(hidden_dim, latent_dim)
        self._build_latent_path()
        # decoder: latent -> hidden -> softmax over features (rho)
        self.decoder = mlp_block(latent_dim, hidden_dim)
        self.dec_rho = Linear(hidden_dim, n_input)
        if likelihood in ("zinb", "zip"):
            self.dec_zi = Linear(hidden_dim, n_input)
        if likelihood in ("nb", "zinb"):
            # gene-specific log inverse dispersion; theta = exp(log_theta)
            self.log_theta = nn.Parameter(torch.zeros(n_input))

    def _build_latent_path(self) -> None:
        """Layers between encoder and decoder (none here; LiVAE's bottleneck)."""

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
        the same value comes from :func:`~geovae.distributions.likelihoods.sparse_log_likelihood_sum`,
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
        """True when the NB likelihood can use :func:`~geovae.distributions.fused_nb.softmax_nb_log_likelihood`:
        sparse counts given, per-feature theta, and neither ``decode`` nor ``_neg_log_lik`` overridden."""
        cls = type(self)
        return (counts_nz is not None and self.likelihood == "nb" and cls.decode is VAEModule.decode
                and cls._neg_log_lik is VAEModule._neg_log_lik)

    def reconstruction_nlls(self, latents: list[torch.Tensor], counts: torch.Tensor, library: torch.Tensor,
                            counts_nz: SparseCounts | None = None) -> list[torch.Tensor]:
        """``_neg_log_lik`` of ``decode(z)`` for each ``z`` in ``latents``, with one decoder pass.

        The decoder is row-wise, so decoding the stacked rows equals separate calls (up to
        float rounding) with fewer kernel launches. With ``counts_nz`` the paths are scored in
        one likelihood call sharing the count-only ``lgamma`` terms; for NB that call is the
        fused softmax + NB function with a closed-form backward
        (:mod:`geovae.distributions.fused_nb`), which gives the same values and gradients.

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
        if counts_nz is not None and shared_theta and type(self)._neg_log_lik is VAEModule._neg_log_lik:
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

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, I)``, summed over dimensions, mean over cells."""
        mu, logvar = mu.float(), logvar.float()
        return (0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0)).sum(dim=-1).mean()

    def forward(self, x: torch.Tensor, counts: torch.Tensor | None, library: torch.Tensor | None = None,
                counts_nz: SparseCounts | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one minibatch: ``recon`` (NLL summed over features, mean over cells), ``kl``
        and ``total = recon + kl``.

        Parameters
        ----------
        x
            Model input ``(n, n_input)``.
        counts
            Raw counts ``(n, n_input)``; may be None when ``counts_nz`` and ``library`` are given.
        library
            Library sizes ``(n, 1)``; row sums of ``counts`` when None.
        counts_nz
            Optional non-zero entries of ``counts`` (same loss, computed faster).

        Returns
        -------
        dict
            ``recon``, ``kl``, ``total``.
        """
        library = self._library(counts, library, counts_nz)
        mu, logvar = self.encode(x)
        (recon,) = self.reconstruction_nlls([self.sample(mu, logvar)], counts, library, counts_nz)
        kl = self.kl(mu, logvar)
        return {"recon": recon, "kl": kl, "total": recon + kl}

    def loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`forward` on a batch dict with keys ``x``, ``counts`` and optionally ``library``
        and the non-zero counts (``counts_nz_index``, ``counts_nz_value``)."""
        counts_nz = self._batch_nz(batch)
        with self.conditioned_on(batch.get("batch")):
            return self(batch["x"], self._dense_counts(batch, counts_nz), batch.get("library"), counts_nz)

    def _dense_counts(self, batch: Mapping[str, torch.Tensor], counts_nz: SparseCounts | None) -> torch.Tensor | None:
        """The batch's dense ``counts``, or None where the loss works from ``counts_nz`` and
        ``library`` alone (so a :class:`~geovae.training.data.LazyBatch` never builds them)."""
        if counts_nz is not None and "library" in batch and type(self)._neg_log_lik is VAEModule._neg_log_lik:
            return None
        return batch["counts"]
