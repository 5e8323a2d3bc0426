"""Package namespaces whose public names load from their submodules on first use (PEP 562).

A pipeline job is a fresh Python process, so what a package ``__init__`` imports is paid by every
job that touches any of its submodules: importing ``geovae.preprocessing._sparse`` used to load
scanpy through ``geovae/preprocessing/__init__.py``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable


class _Namespace(types.ModuleType):
    """A package whose submodule ``x`` defines the exported ``x`` (``geovae.metrics.evaluate``).

    Importing a submodule binds it on its package after it ran; an eager ``from .x import x`` in the
    ``__init__`` used to rebind the name to the function. Here the binding is redirected to the
    function, so ``geovae.metrics.evaluate`` is the function however the submodule was imported.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        exports = self.__dict__.get("_lazy_exports", {})
        if isinstance(value, types.ModuleType) and exports.get(name) == name \
                and value.__name__ == f"{self.__name__}.{name}" and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose name ``n`` lives in submodule ``exports[n]``.

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        Public name -> the submodule (relative to ``package``) that defines it.

    Returns
    -------
    tuple
        The module-level ``__getattr__`` (imports the submodule, caches the name in the package) and
        ``__dir__``.
    """
    module = sys.modules[package]
    module._lazy_exports = exports  # type: ignore[attr-defined]
    if any(name == sub for name, sub in exports.items()):
        module.__class__ = _Namespace

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
