"""decoder2vec: turn any decoder-only LLM into a text encoder.

load -> make bidirectional -> train (MNTP -> SimCSE -> supervised) -> Encoder -> evaluate / serve / export
"""

from .model.bidirectional import is_bidirectional, make_bidirectional, make_causal
from .classification import load_for_classification
from .encode_options import EncodeOptions
from .encoder import Encoder, EncoderConfig
from .errors import Decoder2VecError
from .model.loading import DEFAULT_MODEL, load_model, resolve_model
from .training.merge import merge
from .training.mining import mine_hard_negatives
from .model.pooling import POOLINGS
from .model.precision import PRECISIONS

__version__ = "0.1.0"
__all__ = [
    "Encoder", "EncodeOptions", "EncoderConfig", "Decoder2VecError", "make_bidirectional", "make_causal", "is_bidirectional",
    "load_model", "resolve_model", "DEFAULT_MODEL", "POOLINGS", "PRECISIONS", "merge", "mine_hard_negatives",
    "load_for_classification",
]
