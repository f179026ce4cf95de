"""Finding pretrained weights: Hub files and snapshots (cache first), and local weight files or folders.

Pretrained weights come from a local file or folder (`model.weights`, or a local folder as `model.name`)
or from the Hugging Face Hub cache. Nothing here waits on a network that is not there: a weight file that
is neither local nor cached, with the Hub unreachable or `HF_HUB_OFFLINE=1`, raises `ModelError` at once
with the ways out (download elsewhere, point `model.weights` at a file, or train from scratch).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlparse

from vittui.models.errors import ModelError

if TYPE_CHECKING:
    import torch

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


# ------------------------------------------------------------------------------------------ hub access


def _env_true(key: str) -> bool:
    return os.environ.get(key, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set now (read at call time, not import time)."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover
        return False


def hub_cache_dir() -> str:
    """The Hub cache folder as the environment says now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe so a machine without network fails in seconds, not after minutes of retries."""
    if hub_offline():
        return False
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(key):
            return True  # behind a proxy: let the real request decide
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """Forbid Hub requests for the duration (the cache still answers)."""
    try:
        from huggingface_hub import constants
    except Exception:  # pragma: no cover
        yield
        return
    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def no_network_error(what: str, repo: str, cache: str, *, timm_name: str | None = None) -> ModelError:
    why = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face Hub cannot be reached (no network)"
    lines = [
        f"cannot load pretrained weights for {what}: {why} and {repo} is not in the Hub cache ({cache}).",
        "Ways out:",
        f"  - on a machine with internet run `hf download {repo}` (older: `huggingface-cli download {repo}`)"
        " and copy the cache here (or set HF_HOME to it);",
        '  - or save the weights to a file or folder and set model.weights = "/path/to/them";',
        "  - or set model.pretrained = false to train from scratch.",
    ]
    if timm_name:
        lines.insert(1, f"  (timm model {timm_name!r} takes its weights from the Hub repo {repo})")
    return ModelError("\n".join(lines))


def hub_file(repo: str, filenames: tuple[str, ...], what: str, *, timm_name: str | None = None) -> str:
    """A file of a Hub repo: from the cache if there, else downloaded; ModelError fast when offline."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    cache = hub_cache_dir()
    for fn in filenames:
        try:
            with offline_hub():
                return hf_hub_download(repo, fn, cache_dir=cache, local_files_only=True)
        except Exception:
            continue
    if not hub_reachable():
        raise no_network_error(what, repo, cache, timm_name=timm_name)
    for fn in filenames:
        try:
            return hf_hub_download(repo, fn, cache_dir=cache)
        except GatedRepoError:
            raise ModelError(
                f"{repo} is gated: accept its terms on huggingface.co and log in (`hf auth login`)"
            ) from None
        except RepositoryNotFoundError:
            raise ModelError(f"no Hugging Face repo {repo!r} (for {what}); check model.name") from None
        except LocalEntryNotFoundError:
            raise no_network_error(what, repo, cache, timm_name=timm_name) from None
        except EntryNotFoundError:
            continue
        except Exception as e:  # network trouble mid-way, disk full, ...
            raise ModelError(f"downloading {fn} from {repo} failed: {e}") from None
    raise ModelError(f"{repo} has none of {', '.join(filenames)}")


def _has_weights(folder: str) -> bool:
    return any(Path(folder).glob("*.safetensors")) or any(Path(folder).glob("pytorch_model*.bin"))


def hub_snapshot(repo: str) -> str:
    """A transformers repo's config and weights (shards too) from the cache, else downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    cache, patterns = hub_cache_dir(), ["*.json", "*.safetensors"]
    try:
        with offline_hub():
            folder = snapshot_download(repo, cache_dir=cache, local_files_only=True, allow_patterns=patterns)
        if (Path(folder) / "config.json").is_file() and _has_weights(folder):
            return folder
    except Exception:
        pass
    if not hub_reachable():
        raise no_network_error(repr(repo), repo, cache)
    try:
        folder = snapshot_download(repo, cache_dir=cache, allow_patterns=patterns)
        if not _has_weights(folder):  # older repos: PyTorch pickles only
            folder = snapshot_download(repo, cache_dir=cache, allow_patterns=["*.json", "pytorch_model*.bin"])
    except GatedRepoError:
        raise ModelError(f"{repo} is gated: accept its terms on huggingface.co and log in (`hf auth login`)") \
            from None
    except RepositoryNotFoundError:
        raise ModelError(f"no Hugging Face repo {repo!r}; check model.name") from None
    except Exception as e:
        raise ModelError(f"downloading {repo} failed: {e}") from None
    return folder


# ------------------------------------------------------------------------------------- local weight files


def _weights_file(path: Path) -> Path:
    """The weights inside a folder (model.safetensors first), or the file itself."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelError(f"model.weights {str(path)!r} does not exist")
    for fn in ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors"):
        if (path / fn).is_file():
            return path / fn
    for ext in _WEIGHT_SUFFIXES:
        found = sorted(path.glob(f"*{ext}"))
        if found:
            return found[0]
    raise ModelError(f"no weight file (*.safetensors, *.pth, *.bin) in {path}")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a weight file or folder; unwraps training checkpoints ('state_dict', 'model')."""
    from timm.models import load_state_dict

    file = _weights_file(Path(path).expanduser())
    try:
        sd = load_state_dict(str(file), use_ema=False)
    except Exception as e:
        raise ModelError(f"cannot read weights from {file}: {e}") from None
    # Checkpoints saved through a peft wrapper or HFClassifier carry their prefixes.
    for prefix in ("base_model.model.", "_orig_mod.", "module."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


__all__ = [
    "hub_offline", "hub_cache_dir", "hub_reachable", "offline_hub", "no_network_error", "hub_file", "hub_snapshot",
    "load_state_dict_file",
]
