"""geovae.preprocessing: scanpy-style verbs turning raw counts into model input.

RNA: :func:`qc_rna` -> :func:`log_normalize` -> :func:`hvg` (or all at once:
:func:`preprocess_rna`). ATAC: :func:`qc_atac` -> :func:`binarize` (optional)
-> :func:`tfidf` -> :func:`hvp` (or :func:`preprocess_atac`); :func:`preprocess`
dispatches on the modality with config settings. The model's data
loader z-scores and clips one minibatch at a time with :func:`model_input` /
:func:`batch_input`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geovae._lazy import lazy_exports

# names load from their submodules on first use: importing one submodule does not load scanpy
_EXPORTS = {
    **dict.fromkeys(["binarize", "hvp", "preprocess_atac", "qc_atac", "qc_metrics_atac", "tfidf", "tfidf_matrix"],
                    "atac"),
    **dict.fromkeys(["batch_input", "feature_moments", "model_input", "set_model_input"], "input"),
    **dict.fromkeys(["preprocess", "qc_metrics"], "pipeline"),
    **dict.fromkeys(["hvg", "log_normalize", "preprocess_rna", "qc_metrics_rna", "qc_rna"], "rna"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .atac import binarize, hvp, preprocess_atac, qc_atac, qc_metrics_atac, tfidf, tfidf_matrix
    from .input import batch_input, feature_moments, model_input, set_model_input
    from .pipeline import preprocess, qc_metrics
    from .rna import hvg, log_normalize, preprocess_rna, qc_metrics_rna, qc_rna

__all__ = sorted(_EXPORTS)
