"""sk.incremental: cached position-by-position stepping of a PixelCNN-style model, without rewriting it.

    inc = sk.incremental(model, x_example)      # model in eval mode; x_example [B, C, H, W] fixes the shapes
    for r, c in raster order:
        logits = inc.step(r, c)                 # == model(x)[..., r, c] for the x written so far (zeros elsewhere)
        inc.write(sample(logits), r, c)         # [B, C]; or channel by channel: inc.write(v, r, c, channel=k)

How it works. The model is traced with torch.fx. Every node whose value depends on the input gets a cache of
its whole value map. A static analysis of the graph gives, for every position of every such node, the last
input slot (pixel in raster order, then channel) its value can depend on, taking the masks into account. A
value whose slots are all written is final: it is computed once, when the writes pass it, and each node's final
positions are a prefix of its raster order. A step whose output is not final yet (it reads the pixel being
written, or later ones) computes, from the current input, only the positions it needs that are not final.
So a causal stack costs one position per layer per step, and the result is exact for any model it accepts.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ._incremental_maps import _bn_affine, _conv1x1, _dim_arg, _kwarg, _Map, _NodeKinds, _norm_dim, _unsupported
from .modules import DownShift, MaskedConv2d

__all__ = ["Incremental", "incremental"]

# Modules and functions that act on each position independently (elementwise, or across channels only).
_POSITIONWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)  # fmt: skip
_EVAL_ONLY = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.modules.batchnorm._BatchNorm)
_CHANNEL_DIM_MODULES = (nn.GLU, nn.Softmax, nn.LogSoftmax)  # position-wise when their dim is the channel dim
_POSITIONWISE_FUNCS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow,
    torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.tanh, torch.sigmoid, torch.relu, torch.exp,
    torch.log, torch.abs, torch.sqrt, torch.clamp, torch.square, torch.erf, torch.maximum, torch.minimum,
    F.relu, F.relu6, F.elu, F.selu, F.celu, F.leaky_relu, F.gelu, F.silu, F.mish, F.softplus, F.softsign,
    F.hardtanh, F.hardswish, F.hardsigmoid, F.logsigmoid, F.tanh, F.sigmoid, F.dropout, F.dropout2d,
}  # fmt: skip
_CHANNEL_DIM_FUNCS = {F.glu, F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}
_POSITIONWISE_METHODS = {
    "add", "sub", "mul", "div", "neg", "pow", "tanh", "sigmoid", "relu", "exp", "log", "abs", "sqrt", "clamp",
    "square", "contiguous", "clone", "float", "double", "half", "bfloat16", "softmax", "log_softmax",
}  # fmt: skip
_INPLACE_FUNCS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                  operator.itruediv: operator.truediv}  # fmt: skip
_SHAPE_ONLY = {torch.zeros_like, torch.ones_like, torch.empty_like, "new_zeros", "new_ones", "new_empty", "size", "dim"}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (MaskedConv2d, DownShift)) or super().is_leaf_module(m, qualname)


def incremental(model: nn.Module, example_input: torch.Tensor, *args, **kwargs) -> Incremental:
    """Cached stepping of ``model`` (built from spn layers and position-wise ops) over inputs shaped like
    ``example_input`` [B, C, H, W]. Further arguments of ``model`` (e.g. a class label) are held fixed. See
    Incremental for the API. Raises TypeError naming the first module or function it cannot step through."""
    return Incremental(model, example_input, *args, **kwargs)


class Incremental(_NodeKinds):
    """Position-by-position evaluation of a model over a growing input (see the module docstring).

    ``write(values, row, col, channel=None)`` sets input pixel (row, col) ([B, C]) or one channel of it ([B]);
    ``step(row, col)`` returns ``model(x)[..., row, col]`` for the input x written so far (zeros elsewhere);
    ``reset()`` starts over with an all-zero input. Exact whenever writes come in raster order, channels in
    order inside a pixel; a write behind the last one raises. Reads the model's weights as they are at each
    step; values that do not depend on the input (e.g. a class-label embedding) are computed at construction and
    on reset().
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, *args, **kwargs) -> None:
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
            shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input)
            raise ValueError(f"example_input must be a 4-D tensor [B, C, H, W], got {shape}")
        self.model = model
        try:
            self.graph = _Tracer().trace(model)
        except Exception as e:  # data-dependent control flow and the like
            raise TypeError(f"sk.incremental could not trace the model with torch.fx: {e}") from e
        self._modules = dict(model.named_modules())
        self._eval_only = [(n, m) for n, m in self._modules.items() if isinstance(m, _EVAL_ONLY)]
        self._check_modes()
        self._x = example_input
        self._bind(example_input, args, kwargs)
        with torch.no_grad():
            self._build()
        self.reset()

    # -- public API ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to an all-zero input; recomputes the values that do not depend on the input."""
        with torch.no_grad():
            self._eval_constants()
        for m in [self._input, *self._maps]:
            m.cache.fill_(m.fill)
            m.done = 0
        self._slots = 0  # input slots (pixel * C + channel) written so far, in raster order

    def write(self, values: torch.Tensor, row: int, col: int, channel: int | None = None) -> None:
        """Writes input pixel (row, col): values [B, C], or [B] for one channel."""
        x = self._input.cache
        B, C, H, W = x.shape
        if not (0 <= row < H and 0 <= col < W):
            raise ValueError(f"(row, col)=({row}, {col}) is outside the {H}x{W} input")
        if channel is not None and not 0 <= channel < C:
            raise ValueError(f"channel={channel} is outside the input's {C} channels")
        slot = (row * W + col) * C + (channel or 0)
        if slot < self._slots:
            r, rest = divmod(self._slots - 1, W * C)
            raise ValueError(
                f"writes must come in raster order, channels in order: ({row}, {col}, channel={channel}) comes "
                f"after ({r}, {rest // C}, channel={rest % C}); call reset() to start over"
            )
        want = (B, C) if channel is None else (B,)
        values = torch.as_tensor(values, device=x.device)
        if channel is None and C == 1 and tuple(values.shape) == (B,):
            values = values[:, None]
        if tuple(values.shape) != want:
            raise ValueError(f"values must have shape {list(want)}, got {list(values.shape)}")
        with torch.no_grad():
            if channel is None:
                x[:, :, row, col] = values
                self._slots = slot + C
            else:
                x[:, channel, row, col] = values
                self._slots = slot + 1

    @torch.no_grad()
    def step(self, row: int, col: int) -> torch.Tensor:
        """``model(x)[..., row, col]`` for the input written so far: [B, *channel dims]."""
        self._check_modes()
        out = self._out
        if not (0 <= row < out.H and 0 <= col < out.W):
            raise ValueError(f"(row, col)=({row}, {col}) is outside the model's {out.H}x{out.W} output")
        s = self._slots
        for m in self._maps:  # every value whose input slots are all written is computed once, in order
            p = bisect_left(m.ready, s)
            if p > m.done:
                _run_range(m, m.done, p)
                m.done = p
        if row * out.W + col >= out.done:
            self._provisional(row, col)
        return out.cache[..., row, col].clone()

    # -- stepping ------------------------------------------------------------------------------------------
    def _provisional(self, row: int, col: int) -> None:
        """Computes the output at (row, col) from the current input: every position it reads that is not final."""
        demand = {self._out: (row, row + 1, col, col + 1)}
        todo = []
        for m in reversed(self._maps):
            box = demand.pop(m, None)
            box = box and _after(box, m.done, m.W)
            if not box:
                continue
            todo.append((m, box))
            for src, sbox in m.need(*box):
                src = src.alias or src
                if src is not self._input and sbox:
                    demand[src] = _union(demand.get(src), sbox)
        for m, box in reversed(todo):
            m.compute(*box)

    def _check_modes(self) -> None:
        for name, m in self._eval_only:
            if m.training:
                raise ValueError(
                    f"{type(m).__name__} '{name}' is in training mode; call model.eval() before stepping it"
                )

    # -- building ------------------------------------------------------------------------------------------
    def _bind(self, x: torch.Tensor, args: tuple, kwargs: dict) -> None:
        """Example values of the placeholders: x, then the fixed further arguments or their defaults."""
        self._placeholder_values: dict[fx.Node, Any] = {}
        places = [n for n in self.graph.nodes if n.op == "placeholder"]
        if not places:
            raise TypeError("the model's forward takes no input")
        rest = list(args)
        for i, n in enumerate(places):
            if i == 0:
                v = x
            elif rest:
                v = rest.pop(0)
            elif n.target in kwargs:
                v = kwargs.pop(n.target)
            elif n.args:
                v = n.args[0]
            else:
                raise TypeError(f"the model's forward needs argument '{n.target}': pass it to sk.incremental")
            self._placeholder_values[n] = v
        if rest or kwargs:
            raise TypeError(f"sk.incremental got arguments the model's forward does not take: {rest or kwargs}")

    def _eval_node(self, n: fx.Node, env: dict) -> Any:
        args, kwargs = fx.node.map_arg((n.args, n.kwargs), lambda a: env[a])
        if n.op == "placeholder":
            return self._placeholder_values[n]
        if n.op == "get_attr":
            obj = self.model
            for part in n.target.split("."):
                obj = getattr(obj, part)
            return obj
        if n.op == "call_function":
            return n.target(*args, **kwargs)
        if n.op == "call_method":
            return getattr(args[0], n.target)(*args[1:], **kwargs)
        if n.op == "call_module":
            return self._modules[n.target](*args, **kwargs)
        return args[0]  # output

    def _eval_constants(self) -> None:
        """Re-evaluates the nodes that do not depend on the input, in place where they are cached tensors."""
        env = {}
        for n in self.graph.nodes:
            if n in self._dependent:
                env[n] = self._examples[n]  # only shapes are read from these
                continue
            v = self._eval_node(n, env) if n.op != "output" else None
            old = self._const.get(n)
            if isinstance(old, torch.Tensor) and isinstance(v, torch.Tensor) and old.shape == v.shape:
                old.copy_(v)
                v = old
            self._const[n] = env[n] = v

    def _build(self) -> None:
        env: dict[fx.Node, Any] = {}
        self._dependent: set[fx.Node] = set()
        for n in self.graph.nodes:  # one run on the example: the shapes, and which nodes depend on the input
            env[n] = self._eval_node(n, env)
            if n.op == "placeholder" and self._placeholder_values[n] is self._x:
                self._dependent.add(n)
            elif n.op in ("call_function", "call_method", "call_module") and _tensors(env[n]):
                reads = [a for a in n.all_input_nodes if a in self._dependent]
                if reads and not _shape_only(n):
                    self._dependent.add(n)
        self._examples = env
        self._const = {n: v for n, v in env.items() if n not in self._dependent}
        self._maps: list[_Map] = []
        self._of: dict[fx.Node, _Map | tuple] = {}
        B, C, H, W = self._x.shape
        for n in self.graph.nodes:
            if n.op == "output":
                out = n.args[0]
                if not isinstance(out, fx.Node) or out not in self._of or not isinstance(self._of[out], _Map):
                    raise TypeError("sk.incremental steps models whose output is one tensor that depends on the input")
                self._out = self._of[out]
            elif n in self._dependent:
                if n.op == "placeholder":
                    m = _Map("input", self._x)
                    m.chan_R = torch.arange(H * W * C).reshape(H, W, C).permute(2, 0, 1)  # [C, H, W] slot index
                    m.R = m.chan_R.amax(0)
                    self._input = m
                    self._of[n] = m
                    continue
                self._lower(n)
        self._inline()

    def _inline(self) -> None:
        """A map read only by one position-wise node is computed there, box by box, and not cached."""
        node_of = {m: n for n, m in self._of.items() if isinstance(m, _Map)}
        keep = []
        for m in self._maps:
            n = node_of[m]
            users = list(n.users)
            user = self._of.get(users[0]) if len(users) == 1 else None
            if m is not self._out and isinstance(user, _Map) and m in getattr(user, "srcs", ()) and m.value:
                m.read, m.inlined = m.value, True
            else:
                keep.append(m)
        self._maps = keep

    def _lower(self, n: fx.Node) -> None:
        """Builds the _Map of dependent node n (or a tuple of channel ranges for chunk/split)."""
        value = self._examples[n]
        where = _describe(n, self._modules)
        B = self._x.shape[0]
        if isinstance(value, (tuple, list)):  # chunk / split along channels: its getitems become slices
            if not (_is(n, ("chunk", "split", "tensor_split"), (torch.chunk, torch.split, torch.tensor_split))
                    and _dim_arg(n, 2) == 1):  # fmt: skip
                raise _unsupported(where, "only chunk/split along the channel dim (1) are stepped")
            src = self._map_arg(n.args[0], where)
            bounds, o = [], 0
            for v in value:
                bounds.append((o, o + v.shape[1]))
                o += v.shape[1]
            self._of[n] = (src, bounds)
            return
        if not isinstance(value, torch.Tensor) or value.dim() < 3 or value.shape[0] != B:
            raise _unsupported(where, f"its value is not a [B, C, H, W] map (got {_shape(value)})")
        name = n.target if n.op == "call_module" else n.name
        if n.op == "call_function" and n.target is operator.getitem:
            parent = n.args[0]
            if isinstance(self._of.get(parent), tuple):
                src, bounds = self._of[parent]
                a, b = bounds[n.args[1]]
                self._window(n, name, src, value, (a, b), 0, 0)
                return
            self._getitem(n, name, value, where)
            return
        if n.op == "call_module":
            mod = self._modules[n.target]
            if isinstance(mod, MaskedConv2d):
                self._masked_conv(n, name, mod, value, where)
                return
            if isinstance(mod, DownShift):
                self._window(n, name, self._map_arg(n.args[0], where), value, None, -1, 0)
                return
            if isinstance(mod, (nn.ZeroPad2d, nn.ConstantPad2d)):
                le, ri, to, bo = mod.padding
                self._window(n, name, self._map_arg(n.args[0], where), value, None, -to, -le, float(mod.value))
                return
            if isinstance(mod, nn.Conv2d):
                ok = (mod.kernel_size, mod.stride, mod.padding, mod.dilation) == ((1, 1), (1, 1), (0, 0), (1, 1))
                if not ok or mod.padding_mode != "zeros":
                    raise _unsupported(where, "only 1x1 nn.Conv2d (stride 1, no padding); use sk.MaskedConv2d")
                self._positionwise(n, name, _conv1x1(mod) if mod.groups == 1 else mod, value, where)
                return
            if isinstance(mod, (nn.Identity, *_EVAL_ONLY[:-1])) and len(n.args) == 1:  # the identity in eval mode
                self._of[n] = self._map_arg(n.args[0], where)
                return
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                if mod.running_mean is None:
                    raise _unsupported(where, "a BatchNorm without running statistics normalises over the batch")
                src = self._of.get(n.args[0]) if len(n.args) == 1 else None
                if isinstance(src, _Map) and src.fold_bn is not None and len(n.args[0].users) == 1:
                    src.fold_bn(mod)  # the convolution it follows computes it: folded into its weight and bias
                    self._of[n] = src
                    return
                self._positionwise(n, name, _bn_affine(mod, value.dim()), value, where)
                return
            if isinstance(mod, _POSITIONWISE_MODULES) or (
                isinstance(mod, _CHANNEL_DIM_MODULES) and _norm_dim(getattr(mod, "dim", None), value.dim()) == 1
            ):
                fn = mod
                if type(mod) is nn.ReLU:
                    fn = torch.relu
                elif getattr(mod, "inplace", False):  # on a copy: the box it gets may be a view of a cache
                    fn = lambda *a, _m=mod, **k: _m(a[0].clone(), *a[1:], **k)  # noqa: E731
                self._positionwise(n, name, fn, value, where)
                return
            raise _unsupported(where, "not a module it can step")
        if n.op == "call_function":
            fn = _INPLACE_FUNCS.get(n.target, n.target)
            if fn is F.pad:
                self._pad(n, name, value, where)
                return
            if fn is torch.cat:
                self._cat(n, name, value, where)
                return
            if fn in (F.dropout, F.dropout2d) and _kwarg(n, "training", 2, True):
                raise _unsupported(where, "dropout in training mode; call model.eval() before tracing")
            channel_dim = _dim_arg(n, 1, value.dim(), default=-1 if fn is F.glu else None)
            if fn in _POSITIONWISE_FUNCS or (fn in _CHANNEL_DIM_FUNCS and channel_dim == 1):
                kw = dict(n.kwargs)
                if kw.get("inplace"):
                    kw["inplace"] = False
                self._positionwise(n, name, fn, value, where, kwargs=kw)
                return
            raise _unsupported(where, "not a function it can step")
        if n.op == "call_method":
            meth = n.target[:-1] if n.target.endswith("_") and not n.target.endswith("__") else n.target
            if meth in ("view", "reshape"):
                self._reshape(n, name, value, where)
                return
            if meth in _POSITIONWISE_METHODS and (meth not in ("softmax", "log_softmax") or _dim_arg(n, 1) == 1):
                fn = lambda self_, *a, _meth=meth, **k: getattr(self_, _meth)(*a, **k)  # noqa: E731
                self._positionwise(n, name, fn, value, where)
                return
            raise _unsupported(where, "not a method it can step")
        raise _unsupported(where, "not an operation it can step")


# -- helpers ---------------------------------------------------------------------------------------------------
def _run_range(m: _Map, a: int, b: int) -> None:
    """Computes raster positions [a, b) of m as at most three boxes."""
    W = m.W
    ra, ca = divmod(a, W)
    rb, cb = divmod(b, W)
    if ra == rb:
        m.compute(ra, ra + 1, ca, cb)
        return
    if ca:
        m.compute(ra, ra + 1, ca, W)
        ra += 1
    if ra < rb:
        m.compute(ra, rb, 0, W)
    if cb:
        m.compute(rb, rb + 1, 0, cb)


def _after(box, done: int, W: int):
    """The bounding box of the positions of box at or after raster position done, or None."""
    r0, r1, c0, c1 = box
    if (r1 - 1) * W + (c1 - 1) < done:
        return None
    dr, dc = divmod(done, W)
    if r0 < dr:
        r0 = dr
    if r0 == dr and r1 - r0 == 1:
        c0 = max(c0, dc)
    return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def _union(a, b):
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _tensors(v) -> bool:
    return isinstance(v, torch.Tensor) or (
        isinstance(v, (tuple, list)) and v and all(isinstance(e, torch.Tensor) for e in v)
    )


def _shape_only(n: fx.Node) -> bool:
    return n.target in _SHAPE_ONLY


def _is(n: fx.Node, methods, funcs) -> bool:
    return (n.op == "call_method" and n.target in methods) or (n.op == "call_function" and n.target in funcs)


def _shape(v) -> str:
    return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else type(v).__name__


def _describe(n: fx.Node, modules: dict) -> str:
    if n.op == "call_module":
        return f"{type(modules[n.target]).__name__} '{n.target}'"
    stack = n.meta.get("nn_module_stack") or {}
    inside = f" in '{list(stack)[-1]}'" if stack else ""
    what = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
    kind = "method" if n.op == "call_method" else "function"
    return f"{kind} {what}{inside}"
