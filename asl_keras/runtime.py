"""TensorFlow: the runtime asl-keras uses but does not install by itself.

TensorFlow ships as several distributions that all provide the one `tensorflow` module:
`tensorflow` (CPU, and GPU with `[and-cuda]`), `tensorflow-tpu` on TPU VMs, and the builds that
Kaggle and Colab images carry. A requirement on one of them makes pip install it over another
(a TPU VM would get a second, CPU-only TensorFlow), so `setup.cfg` leaves TensorFlow to the
environment or to an extra (`.[cpu]`, `.[gpu]`, `.[tpu]`; see the README's install table), the
convention of TensorFlow's own add-on libraries. Every module of the package takes `tf` from
here (imported when first used), so a machine without TensorFlow fails with the command that fixes
it, and a version outside the tested range warns once.
"""

from __future__ import annotations

import importlib
import types
import warnings

SUPPORTED_VERSIONS = ("2.20", "2.21")
INSTALL_HINT = ("install the package with the extra for this machine: pip install -e '.[cpu]' "
                "(laptop, CPU), '.[gpu]' (NVIDIA GPUs), '.[tpu]' (TPU VM); on Kaggle and Colab "
                "images, which carry their own TensorFlow, install without an extra")


def version_supported(version: str) -> bool:
    """Whether a TensorFlow version string (e.g. '2.20.0', '2.21.0-rc1') is in the tested range."""
    return ".".join(version.split(".")[:2]) in SUPPORTED_VERSIONS


def load_tensorflow() -> types.ModuleType:
    """Import TensorFlow, or raise ImportError naming the install that provides it."""
    try:
        module = importlib.import_module("tensorflow")
    except ImportError as err:
        raise ImportError(f"asl-keras needs TensorFlow {' or '.join(SUPPORTED_VERSIONS)}, which "
                          f"is not installed here: {INSTALL_HINT}") from err
    if not version_supported(module.__version__):
        warnings.warn(f"asl-keras is tested with TensorFlow {' and '.join(SUPPORTED_VERSIONS)}; "
                      f"this is {module.__version__}", RuntimeWarning, stacklevel=3)
    return module


class LazyTensorFlow(types.ModuleType):
    """Stands for the `tensorflow` module and imports it at the first attribute access.

    Importing a module of the package therefore does not import TensorFlow: the layers and
    models run on any Keras backend (JAX hosts often have no TensorFlow), and only the code
    that really calls TensorFlow (tf.data, distribution, export, the fused CTC kernel) needs it.
    """

    def __init__(self):
        super().__init__("tensorflow")
        self.module: types.ModuleType | None = None

    def __getattr__(self, name: str):
        if self.module is None:
            self.module = load_tensorflow()
        return getattr(self.module, name)


tf = LazyTensorFlow()

__all__ = ["tf", "SUPPORTED_VERSIONS", "INSTALL_HINT", "version_supported", "load_tensorflow"]
