"""spn: Subscale Pixel Networks (Menick & Kalchbrenner, ICLR 2019) in PyTorch.

>>> import torch, spn
>>> model = spn.SPN(spn.SPNConfig(image_size=4, channels=1, bits=2, subscale=2))
>>> x = torch.randint(0, 4, (8, 1, 4, 4))
>>> nats, bpd = model.log_prob(x), model.bits_per_dim(x)   # exact, float64 [8]


def __getattr__(name: str):
    # Imported on first use, so that `python -m spn.configs` does not find the module already imported.
    if name == "configs":
        import importlib

        return importlib.import_module(".configs", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
>>> images = model.sample(2)                               # int64 [2, 1, 4, 4]


def __getattr__(name: str):
    # Imported on first use, so that `python -m spn.configs` does not find the module already imported.
    if name == "configs":
        import importlib

        return importlib.import_module(".configs", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
"""

from .cache import AttentionCache, DecoderCache, GatedBlockCache
from .checkpoint import load_checkpoint, save_checkpoint
from .config import SPNConfig
from .model import SPN
from .pipeline import Pipeline

__all__ = [
    "SPN",
    "AttentionCache",
    "DecoderCache",
    "GatedBlockCache",
    "Pipeline",
    "SPNConfig",
    "configs",
    "load_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str):
    # Imported on first use, so that `python -m spn.configs` does not find the module already imported.
    if name == "configs":
        import importlib

        return importlib.import_module(".configs", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
