"""Neural-network building blocks shared by the models (scvi-tools keeps these in ``scvi.nn``)."""

from .onednn_linear import (MIN_MACS, Linear, cpu_has_avx512, linear, matmul_backend, onednn_linear_available,
                            set_onednn_linear)

__all__ = ["Linear", "MIN_MACS", "cpu_has_avx512", "linear", "matmul_backend", "onednn_linear_available",
           "set_onednn_linear"]
