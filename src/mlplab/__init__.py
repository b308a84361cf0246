"""mlplab: multilayer perceptrons from Dive into Deep Learning (chapter 4), real, tested and fast."""

from mlplab.errors import ConfigError, DataError, MlplabError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "MlplabError", "__version__"]
