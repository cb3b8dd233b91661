"""The architectures luminary registers with transformers' Auto classes.

One explicit list, :data:`ARCHITECTURES`. After ``import luminary``,
``AutoConfig`` and ``AutoModelForCausalLM.from_pretrained(folder)`` load any of
them with no remote code. A test checks that every architecture luminary writes
is listed here.

*When* they are registered matters for start-up. Registering imports luminary's
model classes, hence transformers' model code: about 3 s of imports on a CPU
machine, which commands such as ``luminary merge`` (safetensors in,
safetensors out) never use. So ``import luminary`` calls :func:`register_lazily`:

- if transformers' Auto classes are already imported, it registers at once;
- otherwise it puts a :class:`_AutoClassWatcher` on ``sys.meta_path``, which
  registers as soon as they are imported, before the import that pulled them in
  returns, and then takes itself off.

The watcher waits until no transformers or luminary module is still executing.
transformers imports its Auto classes from inside other modules (a config
class's docstring decorator imports ``modeling_auto``), and luminary's classes
cannot be imported while such a module is half-done. The watcher therefore
counts the transformers and luminary modules being executed and registers when
the outermost one finishes.
"""

from __future__ import annotations

import importlib
import sys
import threading
from importlib.abc import MetaPathFinder

# (model_type, module, config class, base model class, causal-LM class)
ARCHITECTURES: list[tuple[str, str, str, str | None, str]] = [
    ("crystal", "luminary.models.crystal", "CrystalConfig", "CrystalModel", "CrystalForCausalLM"),
    ("luminary_block_moe", "luminary.merge.mixture_models", "BlockMixtureConfig", None, "BlockMixtureForCausalLM"),
    ("luminary_model_moe", "luminary.merge.mixture_models", "ModelMixtureConfig", None, "ModelMixtureForCausalLM"),
]

# Importing either of these makes the Auto classes usable, so registration must come first.
AUTO_MODULES = ("transformers.models.auto.configuration_auto", "transformers.models.auto.modeling_auto")
WATCHED = ("transformers", "luminary")  # top-level packages whose modules the watcher counts

_lock = threading.RLock()
_done = False


def register_all() -> None:
    """Register every architecture in ARCHITECTURES (idempotent)."""
    global _done
    with _lock:
        if _done:
            return
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

        for model_type, module_name, config_name, base_name, lm_name in ARCHITECTURES:
            module = importlib.import_module(module_name)
            config_cls = getattr(module, config_name)
            AutoConfig.register(model_type, config_cls, exist_ok=True)
            if base_name:
                AutoModel.register(config_cls, getattr(module, base_name), exist_ok=True)
            AutoModelForCausalLM.register(config_cls, getattr(module, lm_name), exist_ok=True)
        _done = True
        _AutoClassWatcher.remove()


def is_registered() -> bool:
    return _done


def _executing(name: str) -> bool:
    """Whether module ``name`` is imported but still running its body (CPython marks its spec)."""
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


class _AutoClassWatcher(MetaPathFinder):
    """Registers luminary's architectures once transformers' Auto classes are imported.

    It finds nothing itself: for a transformers or luminary module it asks the
    finders after it for the spec and wraps that loader's ``exec_module``, so
    that it learns when the module's body has finished.
    """

    _installed: _AutoClassWatcher | None = None

    def __init__(self) -> None:
        self._depth = threading.local()
        # Modules already running when the watcher arrives (``luminary`` itself, say): their
        # end is not seen, so registration also waits for them.
        self._running_before = [name for name in list(sys.modules)
                                if name.partition(".")[0] in WATCHED and _executing(name)]

    @classmethod
    def install(cls) -> None:
        with _lock:
            if cls._installed is None and not _done:
                cls._installed = cls()
                sys.meta_path.insert(0, cls._installed)

    @classmethod
    def remove(cls) -> None:
        with _lock:
            if cls._installed is not None and cls._installed in sys.meta_path:
                sys.meta_path.remove(cls._installed)
            cls._installed = None

    def find_spec(self, fullname, path, target=None):
        if _done or fullname.partition(".")[0] not in WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            loader.exec_module = self._counted(loader.exec_module)
        return spec

    def _counted(self, exec_module):
        def exec_and_maybe_register(module):
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            try:
                exec_module(module)
            finally:
                self._depth.n = depth
            # The module's own spec still reads "initializing" here, though its body is done.
            if depth == 0 and not _done and self._auto_classes_imported(module.__name__) and not self._others_running():
                register_all()

        return exec_and_maybe_register

    @staticmethod
    def _auto_classes_imported(just_done: str) -> bool:
        return any(name == just_done or (name in sys.modules and not _executing(name)) for name in AUTO_MODULES)

    def _others_running(self) -> bool:
        return any(_executing(name) for name in self._running_before)


def register_lazily() -> None:
    """Register now if transformers' Auto classes are imported, else as soon as they are."""
    if _done:
        return
    if any(name in sys.modules for name in AUTO_MODULES):
        register_all()
    else:
        _AutoClassWatcher.install()
