"""Old module paths that users imported before the package was laid out along the data path.

``import audiomamba.tagger`` (and the other names below) still works: it returns the module at its new path and
warns with a :class:`DeprecationWarning`.  The aliases are resolved by one import hook, so there is no stub file
per old name, and ``from audiomamba.tagger import Tagger`` gives the very same class as the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module path -> new module path
MOVED: dict[str, str] = {
    "audiomamba.tagger": "audiomamba.inference.tagger",
    "audiomamba.events": "audiomamba.inference.events",
    "audiomamba.export": "audiomamba.inference.export",
    "audiomamba.plot": "audiomamba.inference.plot",
    "audiomamba.features": "audiomamba.models.features",
    "audiomamba.metrics": "audiomamba.evaluation.metrics",
    "audiomamba.inference_graphs": "audiomamba.utils.cuda_graphs",
    "audiomamba.training.distributed": "audiomamba.utils.distributed",
    "audiomamba.training.cuda_graph": "audiomamba.utils.cuda_graphs",
    "audiomamba.data": "audiomamba.soundscapes",
    "audiomamba.data.soundscapes": "audiomamba.soundscapes.mixer",
    "audiomamba.data.sources": "audiomamba.soundscapes.sources",
    "audiomamba.data.vocabulary": "audiomamba.soundscapes.vocabulary",
    "audiomamba.datasets.synthetic": "audiomamba.soundscapes.toy",
    "audiomamba.ops.scan_triton": "audiomamba.ops.triton.scan",
    "audiomamba.ops.layer_norm_triton": "audiomamba.ops.triton.layer_norm",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of :data:`MOVED` and loads them as the module at the new path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname == "audiomamba.data")

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path will be removed", DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        # The module returned by create_module is already executed; importlib has set sys.modules[old] to it.
        pass


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.append(_Alias())
