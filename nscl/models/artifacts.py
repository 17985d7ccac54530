"""The tiny backbones' weights, shipped with the package as versioned, checksummed files.

Pretraining a tiny backbone is deterministic on one machine, but not across machines: torch, oneDNN
and MKL pick kernels per CPU (AVX-512, AVX2, SSE) and thread count whose sums differ in the last
bits, and a few thousand optimiser steps turn those bits into other weights. Every number the book
commits was computed from the weights in `nscl/models/weights/`, so everyone starts from them:

* `<name>.safetensors`: the state dict stored as float16 (half the bytes; loaded as float32, and the
  shipped results were computed from exactly these float32 values);
* `manifest.json`: per backbone, the file's SHA-256 (checked before every load), the pretraining key
  it was made for (architecture, recipe, data), its identity (a hash of the float32 tensors as
  loaded, which every run records), and how and where it was made.

A backbone is loaded from its shipped file when the file was made for the asked pretraining key,
else from the user's cache, else pretrained on the spot and cached (load if present, else train).
A shipped file whose bytes do not match its checksum is an error, never a silent retrain.

`NSCL_PERTURB_WEIGHTS=<seed>` multiplies every loaded weight by 1 + u·2⁻²³ (u uniform in [-1, 1]):
a change at float32 rounding level, the size of what another CPU does, for checking that a result
does not hinge on the last bit. Runs made so record it in their weights' identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nscl.files import atomic_write, atomic_write_text

__all__ = [
    "WEIGHTS_DIR",
    "MANIFEST",
    "ArtifactError",
    "WeightsId",
    "weights_identity",
    "file_sha256",
    "read_manifest",
    "load_shipped",
    "write_shipped",
    "perturbation_seed",
    "perturb_",
    "tag_weights",
    "weights_of",
    "describe",
    "machine_description",
]

WEIGHTS_DIR = Path(__file__).with_name("weights")
MANIFEST = WEIGHTS_DIR / "manifest.json"
PERTURB_ENV = "NSCL_PERTURB_WEIGHTS"
_ATTRIBUTE = "nscl_weights"  # where a loaded backbone carries its WeightsId


class ArtifactError(RuntimeError):
    """A shipped weight file is damaged, or results were computed from other weights than the ones at hand."""


@dataclass(frozen=True)
class WeightsId:
    """Which weights a backbone holds: its name, an identity hash, and where they came from."""

    name: str  # "tiny-vit" or "tiny-clip"
    identity: str  # 16 hex digits of weights_identity(), "+perturbed<seed>" when NSCL_PERTURB_WEIGHTS is set
    source: str  # "shipped", "cache" or "trained"

    def __str__(self) -> str:
        return f"{self.name}@{self.identity}"


def weights_identity(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A hash of names, dtypes, shapes and bytes of every tensor (16 hex digits), independent of file format."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def _as_float32(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def load_shipped(name: str, key: str) -> tuple[dict[str, torch.Tensor], WeightsId] | None:
    """The shipped float32 state dict of `name` if it was made for pretraining key `key`, else None.

    Raises ArtifactError when the file is missing or its bytes differ from the manifest's checksum.
    """
    entry = read_manifest().get(name)
    if entry is None or entry["key"] != key:
        return None
    path = WEIGHTS_DIR / entry["file"]
    if not path.exists():
        raise ArtifactError(
            f"{name}: the manifest lists {path}, which is missing; restore it from the repository "
            f"(git checkout -- {path.relative_to(WEIGHTS_DIR.parents[2])}) or rebuild the shipped "
            f"weights with `python -m nscl artifacts build`."
        )
    found = file_sha256(path)
    if found != entry["sha256"]:
        raise ArtifactError(
            f"{name}: {path} has sha256 {found[:16]}…, the manifest says {entry['sha256'][:16]}…: the "
            f"file is damaged or was replaced without its manifest. Restore both from the repository, "
            f"or rebuild them together with `python -m nscl artifacts build`."
        )
    return _as_float32(load_file(path)), WeightsId(name, entry["identity"], "shipped")


def write_shipped(name: str, key: str, model: nn.Module, stats: Mapping, made_with: str) -> dict:
    """Store `model`'s state dict as float16 in WEIGHTS_DIR/<name>.safetensors and record it in the manifest.

    Returns the manifest entry. The identity is that of the float16 values read back as float32, the
    weights that every later load (and every shipped result) uses.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    stored = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = WEIGHTS_DIR / f"{name}.safetensors"
    atomic_write(path, lambda tmp: save_file(stored, str(tmp), metadata={"name": name, "key": key}))
    entry = {
        "file": path.name,
        "sha256": file_sha256(path),
        "key": key,
        "identity": weights_identity(_as_float32(stored)),
        "dtype": "float16 (loaded as float32)",
        "bytes": path.stat().st_size,
        "made_with": made_with,
        "made_on": machine_description(),
        "stats": {k: v for k, v in stats.items() if k not in ("losses", "classes")},
    }
    manifest = read_manifest()
    manifest[name] = entry
    atomic_write_text(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry


def machine_description() -> str:
    """CPU model, torch's kernel level and thread count, e.g. 'AMD EPYC, AVX512, 2 threads, torch 2.14.1'."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return (
        f"{model}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__.split('+')[0]}"
    )


def perturbation_seed() -> int | None:
    """The seed of NSCL_PERTURB_WEIGHTS, or None when it is unset or empty."""
    value = os.environ.get(PERTURB_ENV, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{PERTURB_ENV}={value!r}: expected an integer seed (e.g. {PERTURB_ENV}=1), or unset it"
        ) from None


@torch.no_grad()
def perturb_(model: nn.Module, seed: int) -> nn.Module:
    """Multiply every floating parameter and buffer by 1 + u·2⁻²³, u ~ U[-1, 1] (seeded), in place."""
    generator = torch.Generator().manual_seed(seed)
    for _, tensor in sorted(list(model.named_parameters()) + list(model.named_buffers()), key=lambda kv: kv[0]):
        if tensor.is_floating_point():
            u = torch.rand(tensor.shape, generator=generator, dtype=torch.float64) * 2 - 1
            tensor.mul_((1 + u * 2.0**-23).to(tensor.dtype))
    return model


def tag_weights(model: nn.Module, weights: WeightsId) -> nn.Module:
    """Attach `weights` to `model` (runs find it with `weights_of` and record it in their settings)."""
    seed = perturbation_seed()
    if seed is not None:
        perturb_(model, seed)
        weights = WeightsId(weights.name, f"{weights.identity}+perturbed{seed}", weights.source)
    setattr(model, _ATTRIBUTE, weights)
    return model


def weights_of(*objects: object) -> list[dict]:
    """The WeightsId of every tagged module inside `objects` (modules, or objects holding modules), as dicts."""
    found: dict[str, dict] = {}
    for obj in objects:
        modules = [obj] if isinstance(obj, nn.Module) else [v for v in vars(obj).values() if isinstance(v, nn.Module)]
        for module in modules:
            for sub in module.modules():
                tag = getattr(sub, _ATTRIBUTE, None)
                if isinstance(tag, WeightsId):
                    found[str(tag)] = {"name": tag.name, "identity": tag.identity}
    return [found[k] for k in sorted(found)]


def describe(weights: list[dict]) -> str:
    """'tiny-vit@0123456789abcdef' (several joined by '+'), or '' for untagged (e.g. downloaded) backbones."""
    return "+".join(f"{w['name']}@{w['identity']}" for w in weights)
