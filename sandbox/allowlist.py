"""What candidate loss code may write and use: tensor math only, nothing reaching files, processes, network.

Attribute access is checked against these sets by `sandbox.policy`; `sandbox.compile` builds the restricted
globals from them. Anything not listed here is refused, so adding a name is a security decision.
"""

from __future__ import annotations

import ast


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _nodes(text: str) -> tuple[type[ast.AST], ...]:
    return tuple(getattr(ast, name) for name in text.split())


# Statements allowed inside functions (module level allows only imports, numeric constants and functions).
FUNCTION_STATEMENTS = _nodes(
    "FunctionDef Return Assign AugAssign AnnAssign If For While Break Continue Pass Expr Assert Import "
    "ImportFrom"
)
# Expression nodes and their helper nodes; no await/yield.
EXPRESSION_NODES = _nodes(
    "BoolOp NamedExpr BinOp UnaryOp Lambda IfExp ListComp SetComp DictComp GeneratorExp Compare Call "
    "Constant Attribute Subscript Starred Name List Tuple Slice Dict Set JoinedStr FormattedValue "
    "expr_context operator unaryop cmpop boolop arguments arg keyword comprehension alias"
)


# Modules a candidate may import, and the alias kind each binds.
IMPORTABLE_MODULES: dict[str, str] = {"torch": "torch", "math": "math", "torch.nn.functional": "F"}

# Names bound in every candidate's globals without an import.
PREBOUND_MODULES: dict[str, str] = {"torch": "torch", "F": "F", "math": "math"}

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

# torch.<name>: tensor math, tensor creation shaped like an input, dtypes and constants.
TORCH_ATTRS: frozenset[str] = (
    _ELEMENTWISE
    | _LOGIC
    | _REDUCTIONS
    | _SHAPE
    | _names(
        "zeros_like ones_like full_like tensor as_tensor scalar_tensor detach is_tensor is_floating_point "
        "numel finfo pi e inf nan float32 float64 float16 bfloat16 float double half int64 int32 long int "
        "bool"
    )
)

# F.<name> (torch.nn.functional): activations and pointwise losses.
F_ATTRS: frozenset[str] = _names(
    "logsigmoid softplus relu relu6 elu selu celu gelu silu mish leaky_relu hardtanh hardsigmoid hardswish "
    "softsign tanhshrink softshrink hardshrink threshold sigmoid tanh softmax log_softmax softmin normalize "
    "binary_cross_entropy binary_cross_entropy_with_logits mse_loss l1_loss smooth_l1_loss huber_loss kl_div "
    "soft_margin_loss margin_ranking_loss"
)

# math.<name>: float functions and constants (nothing with unbounded integer cost such as factorial).
MATH_ATTRS: frozenset[str] = _names(
    "acos acosh asin asinh atan atan2 atanh cbrt ceil copysign cos cosh degrees e erf erfc exp exp2 expm1 "
    "fabs floor fmod fsum gamma hypot inf isclose isfinite isinf isnan lgamma log log10 log1p log2 nan pi "
    "pow radians sin sinh sqrt tan tanh tau trunc"
)

MODULE_ATTRS: dict[str, frozenset[str]] = {"torch": TORCH_ATTRS, "F": F_ATTRS, "math": MATH_ATTRS}

# <value>.<name> on anything that is not a module: tensor methods and properties (no in-place `_` methods, no
# .numpy/.storage/.data/.grad/.backward/.register_hook), torch.finfo fields, sort/topk result fields.
VALUE_ATTRS: frozenset[str] = (
    _ELEMENTWISE
    | _LOGIC
    | _REDUCTIONS
    | _names(
        "bfloat16 bool chunk clone contiguous detach diff dim double dtype device expand expand_as flatten "
        "flip float gather half index_select is_floating_point item long masked_fill ndim nelement numel "
        "requires_grad reshape shape size squeeze t T to transpose type_as unsqueeze view view_as values "
        "indices eps tiny resolution smallest_normal append"
    )
)

# Builtins available to candidate code.
SAFE_BUILTINS: frozenset[str] = _names(
    "abs all any bool divmod enumerate filter float int isinstance len list map max min pow range reversed "
    "round sorted sum tuple zip True False None"
)

# Names refused outright, with the reason the LLM is told.
FORBIDDEN_NAMES: dict[str, str] = {
    **dict.fromkeys(
        "exec eval compile getattr setattr delattr hasattr globals locals vars dir type object super "
        "classmethod "
        "staticmethod property breakpoint memoryview callable issubclass id help".split(),
        "it can run or reach arbitrary code",
    ),
    "open": "file access is not allowed",
    "input": "reading input is not allowed",
    "print": "printing is not allowed; return the loss instead",
    "exit": "exiting is not allowed",
    "quit": "exiting is not allowed",
    "format": "string formatting is not allowed",
}
