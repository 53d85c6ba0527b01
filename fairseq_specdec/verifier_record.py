"""What a drafter checkpoint records about the verifier it was trained next to.

``fairseq-train --task specdec_translation --init-from-verifier V.pt`` keeps a
``VerifierRecord`` of V in the task's state, which fairseq's Trainer saves in every
checkpoint (``task_state``): V's architecture, widths and depths, its target dictionary
(size and checksum), and a fingerprint of the weights a drafter reads or copies. At
decoding, ``drafting.loading`` describes the verifier in use the same way and
compares the two.

The fingerprint survives dtype casts (with --fp16/--bf16 the verifier decodes in half
precision), so it hashes no bytes: per tensor, its shape, its norm and ``PROJECTIONS``
projections onto fixed pseudo-random +-1 vectors divided by the norm (each about N(0, 1)),
all in float64. Two tensors match when the norms agree within ``TOLERANCE`` (relative)
and the projections within ``TOLERANCE``: a cast to bf16 moves them by about 1e-3, other
weights by about 1.
"""
import hashlib
import math
from argparse import Namespace
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Optional

import torch
from torch import Tensor

RECORD_KEY = "specdec_verifier"  # the record's key in a drafter checkpoint's task_state
TOLERANCE = 1e-2
PROJECTIONS = 4
PERIOD = 1 << 16  # the sign vectors repeat every PERIOD elements (one step of the loop)


def _mixed(x: Tensor) -> Tensor:
    """splitmix64's finalizer over int64 (multiplications wrap): well-spread bits, the same
    on every device and torch version."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * -4658895280553007687  # 0xbf58476d1ce4e5b9
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * -7723592293110705685  # 0x94d049bb133111eb
    return x ^ ((x >> 31) & ((1 << 33) - 1))


_SIGNS: Dict[str, Tensor] = {}  # device -> PERIOD x PROJECTIONS signs, made once


def projection_signs(device=None) -> Tensor:
    """PERIOD x PROJECTIONS float64 +-1 entries: element i of a tensor takes row i % PERIOD."""
    key = str(device or "cpu")
    if key not in _SIGNS:
        index = torch.arange(PERIOD * PROJECTIONS, dtype=torch.int64, device=device)
        bits = _mixed((index + 1) * -7046029254386353131)  # 0x9e3779b97f4a7c15
        _SIGNS[key] = torch.where(bits < 0, -1.0, 1.0).to(torch.float64).view(PERIOD, PROJECTIONS)
    return _SIGNS[key]


@torch.no_grad()
def weight_stats(tensor: Tensor) -> List[float]:
    """[norm, projection_1 / norm, ..., projection_P / norm] of a tensor of any dtype."""
    flat = tensor.detach().reshape(-1)
    device = torch.device("cpu") if flat.device.type == "mps" else flat.device  # MPS has no float64
    signs = projection_signs(device)
    norm_sq = torch.zeros((), dtype=torch.float64, device=device)
    projections = torch.zeros(PROJECTIONS, dtype=torch.float64, device=device)
    for start in range(0, flat.numel(), PERIOD):
        # via float32, which holds every fp16/bf16 value and converts faster
        part = flat[start : start + PERIOD].to(device=device, dtype=torch.float32).double()
        norm_sq += part.dot(part)
        projections += part @ signs[: part.numel()]
    norm = math.sqrt(norm_sq.item())
    return [norm, *((projections / norm).tolist() if norm > 0 else [0.0] * PROJECTIONS)]


def stats_match(a: List[float], b: List[float], tolerance: float = TOLERANCE) -> bool:
    """Whether two ``weight_stats`` describe the same weights up to a dtype cast."""
    if abs(a[0] - b[0]) > tolerance * max(a[0], b[0]):
        return False
    return all(abs(x - y) <= tolerance for x, y in zip(a[1:], b[1:]))


def bound_weight_names(state_dict: Mapping[str, Tensor]) -> List[str]:
    """The verifier weights fingerprinted: those a drafter reads or copies, and enough of
    the rest that another training shows: the embeddings, the output projection, the
    final norms and the top encoder and decoder layers."""
    prefixes = ("encoder.embed_tokens.", "encoder.embed_positions.", "encoder.layer_norm.",
                f"encoder.layers.{depth(state_dict, 'encoder.layers.') - 1}.",
                "decoder.embed_tokens.", "decoder.embed_positions.", "decoder.layer_norm.",
                f"decoder.layers.{depth(state_dict, 'decoder.layers.') - 1}.", "decoder.output_projection.")
    return sorted(n for n, t in state_dict.items()
                  if n.startswith(prefixes) and n.endswith((".weight", ".bias")) and torch.is_floating_point(t))


def depth(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    """How many layers ``prefix`` (e.g. "decoder.layers.") numbers."""
    indices = [int(n[len(prefix):].split(".")[0]) for n in state_dict if n.startswith(prefix)]
    return 1 + max(indices) if indices else 0


def width(state_dict: Mapping[str, Tensor], name: str) -> Optional[int]:
    return state_dict[name].shape[1] if name in state_dict else None


def dictionary_checksum(dictionary) -> str:
    return hashlib.sha1("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()[:12]


def checkpoint_arch(state) -> str:
    """The registered architecture of a checkpoint's model ("?" when it does not say)."""
    cfg = state.get("cfg") or {}
    model_cfg = cfg.get("model") if hasattr(cfg, "get") else None
    if isinstance(model_cfg, Namespace):
        return getattr(model_cfg, "arch", "?")
    if model_cfg is not None and hasattr(model_cfg, "get"):
        return model_cfg.get("_name", model_cfg.get("arch", "?"))
    args = state.get("args")
    return getattr(args, "arch", "?")


def model_arch(model) -> str:
    """The registered architecture of a model in memory: fairseq's legacy models (the
    ``transformer`` family) keep their arguments as ``args``; "?" for others."""
    return getattr(getattr(model, "args", None), "arch", None) or "?"


@dataclass
class VerifierRecord:
    arch: str  # the registered architecture ("?" when unknown: not compared)
    encoder_embed_dim: Optional[int]  # width of the encoder's output
    decoder_embed_dim: Optional[int]  # width of the top-layer states (the output projection's input)
    encoder_layers: int
    decoder_layers: int
    dictionary_size: int  # target symbols
    dictionary_checksum: str  # of the target symbols, in order
    weights: Dict[str, Dict[str, list]]  # bound weight name -> {"shape": [...], "stats": weight_stats}
    source: str = ""  # the checkpoint it describes ("" for a model in memory)

    @classmethod
    def describe(cls, state_dict: Mapping[str, Tensor], arch: str, dictionary, source: str = "") -> "VerifierRecord":
        weights, seen = {}, {}
        for name in bound_weight_names(state_dict):
            tensor = state_dict[name]
            key = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)  # shared embeddings: once
            if key not in seen:
                seen[key] = weight_stats(tensor)
            weights[name] = {"shape": list(tensor.shape), "stats": seen[key]}
        decoder_dim = (width(state_dict, "decoder.output_projection.weight")
                       or width(state_dict, "decoder.embed_tokens.weight"))  # none (adaptive softmax): the embeddings
        return cls(arch=str(arch), encoder_embed_dim=width(state_dict, "encoder.embed_tokens.weight"),
                   decoder_embed_dim=decoder_dim, encoder_layers=depth(state_dict, "encoder.layers."),
                   decoder_layers=depth(state_dict, "decoder.layers."), dictionary_size=len(dictionary),
                   dictionary_checksum=dictionary_checksum(dictionary), weights=weights, source=source)

    @classmethod
    def of_state(cls, state, dictionary, source: str) -> "VerifierRecord":
        """The record of a verifier checkpoint already loaded (``load_checkpoint_to_cpu``) from ``source``."""
        return cls.describe(state["model"], checkpoint_arch(state), dictionary, source=str(source))

    @classmethod
    def of_checkpoint(cls, path: str, dictionary) -> "VerifierRecord":
        from fairseq import checkpoint_utils

        return cls.of_state(checkpoint_utils.load_checkpoint_to_cpu(path), dictionary, path)

    @classmethod
    def from_task_state(cls, task_state) -> Optional["VerifierRecord"]:
        """The record in a checkpoint's task_state; None for checkpoints written without one."""
        record = (task_state or {}).get(RECORD_KEY)
        return cls(**record) if record is not None else None

    def to_state(self) -> dict:
        return asdict(self)  # plain types only: torch.load(weights_only=True) reads them back

    @property
    def fingerprint(self) -> str:
        """A short name of the weights for messages; differs whenever ``differences``
        reports weights (those values then differ by more than the rounding)."""
        text = ";".join(f"{name}:{w['shape']}:{math.log(w['stats'][0]) if w['stats'][0] > 0 else 0:.3f}:"
                        + ",".join(f"{q:.3f}" for q in w["stats"][1:])
                        for name, w in sorted(self.weights.items()))
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]

    def differences(self, other: "VerifierRecord") -> List[str]:
        """What differs from ``other``, in words (empty: the same verifier, up to a cast)."""
        found = []
        if "?" not in (self.arch, other.arch) and self.arch != other.arch:
            found.append(f"architecture {self.arch} vs {other.arch}")
        for what in ("encoder_embed_dim", "decoder_embed_dim", "encoder_layers", "decoder_layers"):
            if getattr(self, what) != getattr(other, what):
                found.append(f"{what.replace('_', ' ')} {getattr(self, what)} vs {getattr(other, what)}")
        if (self.dictionary_size, self.dictionary_checksum) != (other.dictionary_size, other.dictionary_checksum):
            found.append(f"target dictionary of {self.dictionary_size} symbols (checksum {self.dictionary_checksum}) "
                         f"vs {other.dictionary_size} ({other.dictionary_checksum})")
        missing = sorted(set(self.weights) ^ set(other.weights))
        if missing:
            found.append(f"{len(missing)} weights only in one of them ({missing[0]}, ...)")
        changed = [n for n in sorted(set(self.weights) & set(other.weights))
                   if self.weights[n]["shape"] != other.weights[n]["shape"]
                   or not stats_match(self.weights[n]["stats"], other.weights[n]["stats"])]
        if changed:
            found.append(f"{len(changed)} of {len(self.weights)} fingerprinted weights differ ({changed[0]}, ...)")
        return found
