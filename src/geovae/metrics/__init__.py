"""Evaluation metrics of latent spaces and their 2-D embeddings.

Definitions are those of the LiVAE paper (Fu et al., *Lorentz-regularized interpretable VAE for
multi-scale single-cell transcriptomic and epigenomic embeddings*, Front. Genet. 16 (2025),
doi:10.3389/fgene.2025.1713727, section 2.5) as its authors' evaluation code computes them, with
AMI no longer reported as "ARI"; they are written out in the repository's ``docs/metrics.md``.
Everything works on numpy arrays; :func:`evaluate` runs the whole suite on an AnnData and
returns a tidy table.

- clustering: :func:`clustering_metrics` (NMI, ARI, AMI, ASW, ASW_label, CAL, DAV, COR),
  :func:`leiden_metrics`, :func:`knn_accuracy`, :func:`neighbour_label_accuracy`,
  :func:`graph_subsample`
- embedding fidelity: :func:`embedding_fidelity` (DC, Q_local, Q_global, K_max,
  overall_embedding_quality), :class:`LatentNeighbourhood` to share the latent side between
  embeddings, :func:`coranking_qnx`, :func:`coranking_matrix`, :func:`subsample_indices`
- intrinsic geometry: :func:`intrinsic_metrics`
- batch mixing: :func:`ilisi`
- program recovery: :func:`program_recovery`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geovae._lazy import lazy_exports

# names load from their submodules on first use (the glossary and the statistics do not load scikit-learn)
_EXPORTS = {
    **dict.fromkeys(["ilisi", "lisi_scores"], "batch"),
    **dict.fromkeys(["clustering_metrics", "coupling_degree", "graph_subsample", "knn_accuracy", "leiden_metrics",
                     "neighbour_label_accuracy"], "clustering"),
    "evaluate": "evaluate",
    **dict.fromkeys(["LatentNeighbourhood", "coranking_matrix", "coranking_qnx", "embedding_fidelity",
                     "fidelity_from_qnx", "precompute_latent", "qnx_from_coranking", "rank_matrix",
                     "subsample_indices"], "fidelity"),
    **dict.fromkeys(["covariance_spectrum", "intrinsic_metrics"], "intrinsic"),
    "program_recovery": "programs",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .batch import ilisi, lisi_scores
    from .clustering import (clustering_metrics, coupling_degree, graph_subsample, knn_accuracy, leiden_metrics,
                             neighbour_label_accuracy)
    from .evaluate import evaluate
    from .fidelity import (LatentNeighbourhood, coranking_matrix, coranking_qnx, embedding_fidelity, fidelity_from_qnx,
                           precompute_latent, qnx_from_coranking, rank_matrix, subsample_indices)
    from .intrinsic import covariance_spectrum, intrinsic_metrics
    from .programs import program_recovery

__all__ = sorted(_EXPORTS)
