"""Extra format adapters: loom, scATAC peak matrices, fragment files, 10x Multiome, Visium.

The basic adapters (``h5ad``, ``10x_mtx``, ``10x_h5``, ``dense``, ``tar``) live in
:mod:`geovae.data.readers`; this package adds the less common GEO formats and
lists them in :data:`BUILTIN_ADAPTERS`, which :mod:`geovae.data.local` registers.

========== ===========================================================================
adapter    input
========== ===========================================================================
loom       ``.loom`` (genes x cells HDF5), read with :func:`anndata.read_loom` (loompy)
atac_mtx   scATAC peak matrix: ``matrix.mtx`` + ``barcodes.tsv`` + ``peaks.bed``
           (cellranger-atac ``filtered_peak_bc_matrix``); ``var`` gets ``chr``/``start``/``end``
fragments  ``fragments.tsv[.gz]`` only: a cells x 5 kb genomic-bin matrix of Tn5
           insertion counts, cells kept with >= ``min_fragments`` fragments
multiome   10x Multiome ``.h5`` with "Gene Expression" and "Peaks": the ``modality``
           (``rna``/``atac``) picks one; :func:`read_multiome` returns both
h5mu       MuData ``.h5mu`` (:func:`read_h5mu`): the ``rna`` or ``atac`` mod (by name or
           ``var["feature_types"]``), counts from ``.X`` or ``layers["counts"]``
visium     Space Ranger ``filtered_feature_bc_matrix.h5`` + ``tissue_positions*.csv``
           (+ ``scalefactors_json.json``) -> ``obsm["spatial"]``
========== ===========================================================================

Writing a new adapter
---------------------
An adapter is a function ``fn(path: Path, **options) -> AnnData`` returning
cells x features raw counts (any matrix type; :func:`geovae.data.local.read_local`
converts ``.X`` to CSR float32, makes names unique and validates the counts).
``path`` is the main file (or directory); companion files are found next to it
(every GEO sample is downloaded into its own folder). Options it may accept,
passed only when the function's signature names them: ``orientation``,
``modality`` (``"rna"``/``"atac"``) and ``min_fragments``. Register it with::

    from geovae.data.local import register_adapter
    register_adapter("my_format", read_my_format, detect=lambda p: p.name.endswith(".myf"))

``detect`` (optional) lets :func:`geovae.data.local.detect_adapter` choose it
automatically; otherwise name it in the dataset sheet's ``adapter`` column (and,
for GEO, select its files with the ``files`` glob column).
"""

from __future__ import annotations

from geovae.data.adapters.atac import (
    annotate_peaks,
    find_peak_triplets,
    read_atac_mtx,
    read_fragments,
)
from geovae.data.adapters.h5mu import read_h5mu
from geovae.data.adapters.multiome import read_multiome, read_multiome_modality
from geovae.data.adapters.other import read_loom, read_visium, use_gene_symbols

__all__ = [
    "BUILTIN_ADAPTERS",
    "annotate_peaks",
    "find_peak_triplets",
    "read_atac_mtx",
    "read_fragments",
    "read_h5mu",
    "read_loom",
    "read_multiome",
    "read_multiome_modality",
    "read_visium",
    "use_gene_symbols",
]


def _is_loom(path):  # noqa: ANN001, ANN202
    return path.is_file() and path.name.lower().endswith(".loom")


def _is_fragments(path):  # noqa: ANN001, ANN202
    return path.is_file() and "fragments.tsv" in path.name.lower()


def _is_h5mu(path):  # noqa: ANN001, ANN202
    return path.is_file() and path.name.lower().endswith(".h5mu")


def _is_peak_mtx(path):  # noqa: ANN001, ANN202
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file()]
        return bool(find_peak_triplets(names))
    low = path.name.lower()
    if ".mtx" not in low:
        return False
    names = [p.name for p in path.parent.iterdir() if p.is_file()]
    return any(t["matrix"] == path.name for t in find_peak_triplets(names))


#: (name, reader, detect) of the format adapters, registered by :mod:`geovae.data.local`.
BUILTIN_ADAPTERS = (
    ("loom", read_loom, _is_loom),
    ("fragments", read_fragments, _is_fragments),
    ("atac_mtx", read_atac_mtx, _is_peak_mtx),
    ("multiome", read_multiome_modality, None),
    ("h5mu", read_h5mu, _is_h5mu),
    ("visium", read_visium, None),
)
