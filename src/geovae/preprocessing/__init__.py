"""geovae.preprocessing: scanpy-style verbs turning raw counts into model input.

RNA: :func:`qc_rna` -> :func:`log_normalize` -> :func:`hvg` (or all at once:
:func:`preprocess_rna`). ATAC: :func:`qc_atac` -> :func:`binarize` (optional)
-> :func:`tfidf` -> :func:`hvp` (or :func:`preprocess_atac`); :func:`preprocess`
dispatches on the modality with config settings. The model's data
loader z-scores and clips one minibatch at a time with :func:`model_input` /
:func:`batch_input`.
"""

from .atac import binarize, hvp, preprocess_atac, qc_atac, qc_metrics_atac, tfidf, tfidf_matrix
from .input import batch_input, feature_moments, model_input, set_model_input
from .pipeline import preprocess, qc_metrics
from .rna import hvg, log_normalize, preprocess_rna, qc_metrics_rna, qc_rna

__all__ = [
    "batch_input",
    "binarize",
    "feature_moments",
    "hvg",
    "hvp",
    "log_normalize",
    "model_input",
    "preprocess",
    "preprocess_atac",
    "preprocess_rna",
    "qc_atac",
    "qc_metrics",
    "qc_metrics_atac",
    "qc_metrics_rna",
    "qc_rna",
    "set_model_input",
    "tfidf",
    "tfidf_matrix",
]
