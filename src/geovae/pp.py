"""Preprocessing verbs, scanpy style (see :mod:`geovae.preprocessing`)."""

from geovae.preprocessing import (  # noqa: F401
    hvg,
    hvp,
    preprocess,
    preprocess_atac,
    preprocess_rna,
    qc_atac,
    qc_metrics,
    qc_rna,
    tfidf,
)

__all__ = ["qc_rna", "qc_metrics", "hvg", "qc_atac", "tfidf", "hvp", "preprocess_rna", "preprocess_atac", "preprocess"]
