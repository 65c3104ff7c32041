"""The trusted operation table: every operation a loss graph may contain, by name.

A loss graph (`sandbox.graph`) names its operations with the strings below; the interpreter maps them back to
these torch, torch.nn.functional, math and operator functions, tensor methods and attributes. Nothing else can
run: adding a name here is a security decision. All of them are pure (no in-place variant, no I/O, no global
state); arguments that would break that (`out=`, `inplace=True`, device strings) are refused by the graph
validator.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ELEMENTWISE = _names(
    "abs absolute acos acosh asin asinh atan atan2 atanh ceil clamp clamp_max clamp_min clip copysign cos "
    "cosh deg2rad digamma erf erfc erfinv exp exp2 expm1 fix float_power floor floor_divide fmod frac "
    "heaviside hypot i0 lerp lgamma log log10 log1p log2 logaddexp logaddexp2 logit mul multiply add sub "
    "subtract div divide true_divide neg negative nan_to_num polygamma pow rad2deg reciprocal remainder "
    "round rsqrt sigmoid sign sgn signbit sin sinc sinh sqrt square tan tanh trunc xlogy relu softmax "
    "log_softmax"
)
_LOGIC = _names(
    "eq ne lt le gt ge greater less maximum minimum fmax fmin where isfinite isinf isnan isneginf isposinf "
    "logical_and logical_not logical_or logical_xor"
)
_REDUCTIONS = _names(
    "amax amin argmax argmin all any cumsum cumprod logcumsumexp logsumexp max mean median min nanmean norm "
    "prod quantile nanquantile std std_mean sum var var_mean count_nonzero sort argsort topk kthvalue"
)
_SHAPE = _names(
    "stack cat concat flatten reshape squeeze unsqueeze broadcast_to chunk gather index_select flip roll t "
    "transpose outer dot matmul"
)
_TORCH_ONLY = _names("zeros_like ones_like full_like detach numel")

# torch.<name> used as a graph operation.
TORCH_FUNCTIONS: tuple[str, ...] = _ELEMENTWISE + _LOGIC + _REDUCTIONS + _SHAPE + _TORCH_ONLY

# torch.nn.functional.<name> (written `F.<name>` in graphs): activations and element-wise losses.
F_FUNCTIONS: tuple[str, ...] = _names(
    "logsigmoid softplus relu relu6 elu selu celu gelu silu mish leaky_relu hardtanh hardsigmoid hardswish "
    "softsign tanhshrink softshrink hardshrink threshold sigmoid tanh softmax log_softmax softmin normalize "
    "binary_cross_entropy binary_cross_entropy_with_logits mse_loss l1_loss smooth_l1_loss huber_loss kl_div "
    "soft_margin_loss margin_ranking_loss"
)

# math.<name>: float functions, applied to beta or numbers derived from it.
MATH_FUNCTIONS: tuple[str, ...] = _names(
    "acos acosh asin asinh atan atan2 atanh cbrt ceil copysign cos cosh degrees erf erfc exp exp2 expm1 fabs "
    "floor fmod gamma hypot isclose isfinite isinf isnan lgamma log log10 log1p log2 pow radians sin sinh "
    "sqrt tan tanh trunc"
)

# Python operators as traced from `a + b`, `-a`, `a[i]`, `a > b`, `~m`, `a & b`, ...
OPERATORS: tuple[str, ...] = _names(
    "add sub mul truediv floordiv mod pow neg pos abs invert and_ or_ xor eq ne lt le gt ge getitem matmul"
)

# <tensor>.<name>(...): the tensor methods a graph may call (no `_` in-place methods, no .item/.tolist/
# .numpy/.backward/.register_hook/.cpu/.cuda/.type, nothing that reaches storage or autograd internals).
TENSOR_METHODS: frozenset[str] = frozenset(
    _ELEMENTWISE
    + _LOGIC
    + _REDUCTIONS
    + _names(
        "bfloat16 bool chunk clone contiguous detach diff dim double expand expand_as flatten flip float "
        "gather half index_select long int masked_fill numel reshape size squeeze t transpose type_as "
        "unsqueeze view view_as to"
    )
)

# <value>.<name>: attributes a graph may read (sizes, dtype, transposes, fields of sort/topk/max results).
ATTRIBUTES: frozenset[str] = frozenset(_names("shape ndim dtype T mT values indices"))

# Methods and attributes whose value is a size of a tensor: Python control flow may depend on these only.
SIZE_METHODS: frozenset[str] = frozenset(_names("numel size dim"))
SIZE_ATTRIBUTES: frozenset[str] = frozenset(_names("shape ndim"))

# String constants a graph may pass (reduction modes, quantile interpolation, norms, approximations).
STRINGS: frozenset[str] = frozenset(
    _names("none mean sum batchmean linear lower higher midpoint nearest fro nuc tanh floor trunc")
)

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


def _table() -> dict[str, Callable[..., Any]]:
    table: dict[str, Callable[..., Any]] = {}
    for name in TORCH_FUNCTIONS:
        table[f"torch.{name}"] = getattr(torch, name)
    for name in F_FUNCTIONS:
        table[f"F.{name}"] = getattr(F, name)
    for name in MATH_FUNCTIONS:
        table[f"math.{name}"] = getattr(math, name)
    for name in OPERATORS:
        table[f"operator.{name}"] = getattr(operator, name)
    return table


# name -> function, for call_function nodes.
FUNCTIONS: dict[str, Callable[..., Any]] = _table()

# function -> name, for the tracer (the first name registered wins when two names share one function).
FUNCTION_NAMES: dict[int, str] = {}
for _name, _function in FUNCTIONS.items():
    FUNCTION_NAMES.setdefault(id(_function), _name)
