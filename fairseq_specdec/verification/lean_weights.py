"""The lean forward's view of a fairseq decoder's weights: plain tensors per layer, laid out
for the device's fastest matrix product, read without ``nn.Module`` calls.

On a CPU in float32, ``F.linear`` of a few rows against an out x in weight runs a kernel
that streams the weight about twice as slowly as a product against the same weight stored
in x out (``torch.addmm``): decoding reads every weight once per step, so at batch 1 the
step is bound by that stream (measured on a 2-core EPYC: the 3+3 x 256 verifier's 25
decoder projections, 1.6 ms per step with ``F.linear``, 0.9 ms with ``addmm`` over
transposed copies). There the lean forward keeps a transposed copy of each projection
(the query, key and value projections of the self-attention fused into one); elsewhere
(GPUs, half precision) it uses the modules' own weights through ``F.linear``. The copies
are rebuilt when the model's parameters change (moved, cast or updated in place).
"""
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Dense:
    """A linear map: ``weight`` is in x out when ``transposed`` (``addmm``), else
    nn.Linear's out x in (``F.linear``)."""

    weight: Tensor
    bias: Optional[Tensor]
    transposed: bool

    def __call__(self, x: Tensor) -> Tensor:
        if not self.transposed:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.size(-1))
        out = torch.mm(flat, self.weight) if self.bias is None else torch.addmm(self.bias, flat, self.weight)
        return out.view(*x.shape[:-1], self.weight.size(1))


def transposes_on(weight: Tensor) -> bool:
    """Whether products against ``weight`` run faster over a transposed copy (CPU, float32)."""
    return weight.device.type == "cpu" and weight.dtype == torch.float32


def dense(linears: Sequence[nn.Linear]) -> Dense:
    """One ``Dense`` computing the outputs of ``linears`` (same input) concatenated."""
    if len(linears) == 1:
        return dense_of(linears[0].weight, linears[0].bias)
    weight = torch.cat([lin.weight.detach() for lin in linears])
    biases = [lin.bias for lin in linears]
    if any(b is not None for b in biases):
        bias = torch.cat([b.detach() if b is not None else weight.new_zeros(lin.out_features)
                          for b, lin in zip(biases, linears)])
    else:
        bias = None
    return dense_of(weight, bias)


def dense_of(weight: Tensor, bias: Optional[Tensor] = None) -> Dense:
    """The ``Dense`` of an out x in ``weight`` (and ``bias``)."""
    bias = None if bias is None else bias.detach()
    if transposes_on(weight):
        return Dense(transposed_copy(weight), bias, transposed=True)
    return Dense(weight.detach(), bias, transposed=False)


_TRANSPOSED: Dict[int, Tuple[weakref.ref, Tuple, Tensor]] = {}  # id(weight) -> (weight, its state, its copy)


def transposed_copy(weight: Tensor) -> Tensor:
    """``weight.t().contiguous()``, made once per weight tensor while it is unchanged and shared
    by every view that reads it (a chain drafter reading the verifier's output projection keeps
    no second copy: one less stream of the vocabulary's weights through the caches)."""
    key, state = id(weight), (weight.data_ptr(), weight._version, weight.dtype, tuple(weight.shape))
    entry = _TRANSPOSED.get(key)
    if entry is not None and entry[0]() is weight and entry[1] == state:
        return entry[2]
    copy = weight.detach().t().contiguous()
    _TRANSPOSED[key] = (weakref.ref(weight, lambda _, key=key: _TRANSPOSED.pop(key, None)), state, copy)
    return copy


Norm = Callable[[Tensor], Tensor]


def norm_of(module: Optional[nn.Module]) -> Optional[Norm]:
    """A layer norm as a function of its input (``F.layer_norm`` over its parameters when it
    is torch's ``LayerNorm``, skipping the module call), or the module itself."""
    if type(module) is nn.LayerNorm:
        return partial(F.layer_norm, normalized_shape=module.normalized_shape, weight=module.weight,
                       bias=module.bias, eps=module.eps)
    return module


@dataclass(frozen=True)
class Attention:
    heads: int
    scaling: float
    query: Dense  # self-attention: query, key and value fused (3C outputs); cross-attention: the query
    out: Dense
    norm: Norm


@dataclass(frozen=True)
class LeanLayer:
    """One fairseq decoder layer's weights for ``lean_layers.layer_forward``."""

    self_attn: Attention
    cross_attn: Optional[Attention]
    fc1: Dense
    fc2: Dense
    final_norm: Norm
    activation: Callable[[Tensor], Tensor]
    normalize_before: bool


def lean_layer(layer) -> LeanLayer:
    attn, cross = layer.self_attn, layer.encoder_attn
    return LeanLayer(
        self_attn=Attention(attn.num_heads, attn.scaling, dense([attn.q_proj, attn.k_proj, attn.v_proj]),
                            dense([attn.out_proj]), norm_of(layer.self_attn_layer_norm)),
        cross_attn=None if cross is None else Attention(cross.num_heads, cross.scaling, dense([cross.q_proj]),
                                                         dense([cross.out_proj]),
                                                         norm_of(layer.encoder_attn_layer_norm)),
        fc1=dense([layer.fc1]), fc2=dense([layer.fc2]), final_norm=norm_of(layer.final_layer_norm),
        activation=layer.activation_fn, normalize_before=layer.normalize_before)


def parameters_key(module: nn.Module) -> Tuple:
    """Changes when any parameter of ``module`` is replaced, moved, cast or written in place."""
    return tuple((p.data_ptr(), p._version, p.dtype) for p in module.parameters())


@dataclass(frozen=True)
class LeanDecoder:
    """A fairseq decoder's layers (``LeanLayer``), final norm and output-dimension projection,
    and its output projection over the vocabulary (when it is a plain linear map)."""

    layers: List[LeanLayer]
    final_norm: Optional[Norm]
    project_out: Optional[nn.Module]
    output: Optional[Dense]  # C x V (transposed) or V x C; None: the decoder's own output_layer
    key: Tuple  # parameters_key of the decoder it was read from
    extra: Dict[str, Dense] = field(default_factory=dict)  # more of the decoder's nn.Linear, by name

    @staticmethod
    def of(decoder, extra: Sequence[str] = ()) -> "LeanDecoder":
        """The view of ``decoder``, with its linear maps named in ``extra`` (e.g. a drafter's own)."""
        projection = getattr(decoder, "output_projection", None)
        output = dense([projection]) if isinstance(projection, nn.Linear) else None
        return LeanDecoder([lean_layer(layer) for layer in decoder.layers], norm_of(decoder.layer_norm),
                           decoder.project_out_dim, output, parameters_key(decoder),
                           {name: dense([getattr(decoder, name)]) for name in extra})

    def logits(self, decoder, x: Tensor) -> Tensor:
        """``decoder.output_layer(x)`` through this view's output projection (the decoder's own
        output layer where the view has none)."""
        return decoder.output_layer(x) if self.output is None else self.output(x)

    def current(self, decoder) -> "LeanDecoder":
        """This view, or a fresh one if ``decoder``'s parameters changed since it was read."""
        return self if parameters_key(decoder) == self.key else LeanDecoder.of(decoder, tuple(self.extra))
