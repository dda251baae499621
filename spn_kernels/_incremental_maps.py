"""The maps of sk.incremental (spn_kernels/incremental.py): one cached value map per graph node that depends on
the input, and how each kind of node computes a box of its map and which boxes of its inputs that needs."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from .modules import MaskedConv2d

SUPPORTED = (
    "sk.MaskedConv2d, 1x1 nn.Conv2d, position-wise activations, eval-mode BatchNorm and Dropout, + - * /, "
    "chunk/split/cat/slices along channels, zero pads and crops of rows and columns, sk.DownShift, reshapes of "
    "the channel dims"
)


class _Map:
    """The cached value map [B, *mid, H, W] of one graph node, its final prefix and how to compute a box."""

    def __init__(self, name: str, value: torch.Tensor, fill: float = 0.0) -> None:
        self.name, self.fill = name, fill
        self.H, self.W = value.shape[-2:]
        self.flat: torch.Tensor | None = None
        if value.dim() == 4:
            # Positions in raster order, a position's channels contiguous, plus one zero position at the end:
            # flat [B, H * W + 1, C]. A convolution step gathers its window's taps from it with one index_select
            # (taps outside the image read the zero position), and a step writes one position with one copy.
            B, C = value.shape[:2]
            self.flat = value.new_zeros(B, self.H * self.W + 1, C)
            self.cache = self.flat[:, : self.H * self.W].view(B, self.H, self.W, C).permute(0, 3, 1, 2)
            self.cache.fill_(fill)
            # each position's [B, C, 1, 1] view, made once: a step's write is then one copy_ call
            self.pos = self.flat[:, : self.H * self.W, :, None, None].unbind(1)
        else:
            self.cache = torch.full_like(value, fill)
        self.done = 0  # positions [0, done) in raster order are computed and final
        self.ready: list[int] = []  # per position: the last input slot it depends on, non-decreasing
        self.need: Callable[[int, int, int, int], list] = lambda r0, r1, c0, c1: []
        self.value: Callable[[int, int, int, int], torch.Tensor] | None = None  # a box's value, computed
        self.read = self.box  # a box's value for a position-wise consumer: cached, or computed if inlined
        self.inlined = False
        self.alias: _Map | None = None  # a channel slice of another map is a view of its cache
        self.win: tuple | None = None  # (src, c0, c1, oy, ox) of a window map
        self.fold_bn: Callable[[nn.Module], None] | None = None  # a convolution's: fold the BatchNorm after it

    def box(self, r0, r1, c0, c1) -> torch.Tensor:
        return self.cache[..., r0:r1, c0:c1]

    def compute(self, r0, r1, c0, c1) -> None:
        v = self.value(r0, r1, c0, c1)
        if self.flat is not None and r1 - r0 == 1 and c1 - c0 == 1:
            self.pos[r0 * self.W + c0].copy_(v)
        else:
            self.cache[..., r0:r1, c0:c1] = v


class _NodeKinds:
    """The map builders of Incremental, one per kind of node (Incremental._lower picks one)."""

    def _map_arg(self, a, where: str) -> _Map:
        m = self._of.get(a) if isinstance(a, fx.Node) else None
        if not isinstance(m, _Map):
            raise _unsupported(where, "its input is not a map it steps")
        return m

    def _add(self, m: _Map, R: torch.Tensor, n: fx.Node) -> None:
        m.R = R.flatten().cummax(0).values.reshape(R.shape)  # a final position's inputs are final prefixes too
        m.ready = m.R.flatten().tolist()
        self._maps.append(m)
        self._of[n] = m

    def _positionwise(self, n, name, fn, value, where, kwargs=None) -> None:
        """fn applied to a box of each input (dependent maps and position-aligned constants alike)."""
        m = _Map(name, value)
        H, W = m.H, m.W
        srcs: list[_Map] = []

        def getter(a):
            if isinstance(a, fx.Node) and a in self._dependent:
                src = self._map_arg(a, where)
                if (src.H, src.W) != (H, W):
                    raise _unsupported(where, f"it mixes a {src.H}x{src.W} map into a {H}x{W} one")
                srcs.append(src)
                return lambda r0, r1, c0, c1: src.read(r0, r1, c0, c1)
            if isinstance(a, fx.Node):
                c = self._const[a]
                if isinstance(c, torch.Tensor) and c.dim() >= 2 and c.shape[-2:] != (1, 1):
                    if tuple(c.shape[-2:]) != (H, W):
                        raise _unsupported(where, f"a constant of shape {tuple(c.shape)} does not align with {H}x{W}")
                    return lambda r0, r1, c0, c1: c[..., r0:r1, c0:c1]
                return lambda r0, r1, c0, c1: c
            if isinstance(a, (list, tuple, dict)):
                inner: list[fx.Node] = []
                fx.node.map_arg(a, inner.append)
                if any(e in self._dependent for e in inner):
                    raise _unsupported(where, "a nested argument holds a value that depends on the input")
                a = fx.node.map_arg(a, lambda e: self._const[e])
            return lambda r0, r1, c0, c1: a

        args = [getter(a) for a in n.args]
        kw = {k: getter(v) for k, v in (n.kwargs if kwargs is None else kwargs).items()}
        if not srcs:
            raise _unsupported(where, "none of its inputs is a map it steps")

        if kw:
            m.value = lambda r0, r1, c0, c1: fn(
                *[g(r0, r1, c0, c1) for g in args], **{k: g(r0, r1, c0, c1) for k, g in kw.items()}
            )
        elif len(args) == 1:
            (g,) = args
            m.value = lambda r0, r1, c0, c1: fn(g(r0, r1, c0, c1))
        else:
            m.value = lambda r0, r1, c0, c1: fn(*[g(r0, r1, c0, c1) for g in args])
        m.srcs = srcs

        def need(r0, r1, c0, c1):
            out = []
            for src in srcs:  # an inlined source is computed here: what it reads is read here
                out += src.need(r0, r1, c0, c1) if src.inlined else [(src, (r0, r1, c0, c1))]
            return out

        m.need = need
        self._add(m, torch.stack([s.R for s in srcs]).amax(0), n)

    def _window(self, n, name, src: _Map, value, chans, oy: int, ox: int, fill: float = 0.0) -> None:
        """out[:, c, i, j] = src[:, chans[0] + c, i + oy, j + ox] (fill outside src): pads, crops, shifts, and
        channel slices."""
        a, b = chans if chans is not None else (0, src.cache.shape[1])
        parent = n.args[0]
        if src.win is not None and src.fill == fill and len(parent.users) == 1:
            s0, a0, _, oy0, ox0 = src.win
            if oy0 <= 0 and ox0 <= 0 and src.H + oy0 >= s0.H and src.W + ox0 >= s0.W:  # src pads s0: compose
                self._maps.remove(src)
                src, a, b, oy, ox = s0, a0 + a, a0 + b, oy0 + oy, ox0 + ox
        if (oy, ox, fill) == (0, 0, 0.0) and tuple(value.shape[-2:]) == (src.H, src.W) and src is not self._input:
            m = _Map(name, value[:, :0])  # a channel slice: a view of src's cache, final where src is
            m.cache, m.alias, m.R, m.ready = src.cache[:, a:b], src.alias or src, src.R, src.ready
            m.flat = src.flat[..., a:b]
            self._of[n] = m
            return
        m = _Map(name, value, fill)
        m.win = (src, a, b, oy, ox)
        Hs, Ws = src.H, src.W

        def clip(r0, r1, c0, c1):
            return max(r0, -oy), min(r1, Hs - oy), max(c0, -ox), min(c1, Ws - ox)

        def compute(r0, r1, c0, c1):
            r0, r1, c0, c1 = clip(r0, r1, c0, c1)
            if r0 < r1 and c0 < c1:
                m.cache[..., r0:r1, c0:c1] = src.cache[:, a:b, r0 + oy : r1 + oy, c0 + ox : c1 + ox]

        m.compute = compute  # positions outside src keep the fill

        def need(r0, r1, c0, c1):
            r0, r1, c0, c1 = clip(r0, r1, c0, c1)
            return [(src, (r0 + oy, r1 + oy, c0 + ox, c1 + ox))] if r0 < r1 and c0 < c1 else []

        m.need = need
        R_src = src.chan_R[a:b].amax(0) if src is self._input else src.R
        self._add(m, _shifted(R_src, oy, ox, m.H, m.W), n)

    def _getitem(self, n, name, value, where) -> None:
        """x[:, c0:c1, r0:r1, c0:c1] with step-1 slices: a channel slice plus a crop."""
        src = self._map_arg(n.args[0], where)
        idx = fx.node.map_arg(n.args[1], lambda e: self._const[e])  # shapes read in forward are constants
        idx = idx if isinstance(idx, tuple) else (idx,)
        nd = src.cache.dim()
        if sum(i is Ellipsis for i in idx) > 1 or not all(isinstance(i, slice) or i is Ellipsis for i in idx):
            raise _unsupported(where, "only slices with step 1 are stepped")
        if Ellipsis in idx:
            e = idx.index(Ellipsis)
            idx = idx[:e] + (slice(None),) * (nd - len(idx) + 1) + idx[e + 1 :]
        idx = idx + (slice(None),) * (nd - len(idx))
        starts = []
        for d, sl in enumerate(idx):
            lo, hi, st = sl.indices(src.cache.shape[d])
            full = (lo, hi) == (0, src.cache.shape[d])
            if st != 1 or (d == 0 and not full) or (1 < d < nd - 2 and not full):
                raise _unsupported(where, "only step-1 slices of the channels, rows and columns are stepped")
            starts.append((lo, hi))
        chans = starts[1] if nd >= 4 else None
        self._window(n, name, src, value, chans, starts[-2][0], starts[-1][0])

    def _pad(self, n, name, value, where) -> None:
        src = self._map_arg(n.args[0], where)
        pad = n.args[1] if len(n.args) > 1 else n.kwargs["pad"]
        mode = n.args[2] if len(n.args) > 2 else n.kwargs.get("mode", "constant")
        fill = n.args[3] if len(n.args) > 3 else n.kwargs.get("value", None)
        if mode != "constant" or len(pad) not in (2, 4) or not all(isinstance(p, int) for p in pad):
            raise _unsupported(where, "only constant pads of the rows and columns are stepped")
        le, top = pad[0], (pad[2] if len(pad) == 4 else 0)
        self._window(n, name, src, value, None, -top, -le, float(fill or 0.0))

    def _cat(self, n, name, value, where) -> None:
        parts = n.args[0] if n.args else n.kwargs["tensors"]
        if _dim_arg(n, 1, value.dim(), default=0) != 1:
            raise _unsupported(where, "only cat along the channel dim (1) is stepped")
        m = _Map(name, value)
        pieces, srcs, o = [], [], 0
        for p in parts:
            if isinstance(p, fx.Node) and p in self._dependent:
                s = self._map_arg(p, where)
                srcs.append(s)
                k = s.cache.shape[1]
                pieces.append((o, o + k, s, None))
            else:
                c = self._const[p] if isinstance(p, fx.Node) else p
                k = c.shape[1]
                pieces.append((o, o + k, None, c))
            o += k

        def compute(r0, r1, c0, c1):
            for a, b, s, c in pieces:
                m.cache[:, a:b, r0:r1, c0:c1] = s.cache[..., r0:r1, c0:c1] if s is not None else c[..., r0:r1, c0:c1]

        m.compute = compute
        m.need = lambda r0, r1, c0, c1: [(s, (r0, r1, c0, c1)) for s in srcs]
        self._add(m, torch.stack([s.R for s in srcs]).amax(0), n)

    def _reshape(self, n, name, value, where) -> None:
        src = self._map_arg(n.args[0], where)
        if value.shape[0] != src.cache.shape[0] or value.shape[-2:] != src.cache.shape[-2:]:
            raise _unsupported(where, "only reshapes of the channel dims (batch, rows and columns kept) are stepped")
        m = _Map(name, value)
        mid = tuple(value.shape[1:-2])

        def value(r0, r1, c0, c1):
            box = src.cache[..., r0:r1, c0:c1]
            return box.reshape(box.shape[0], *mid, r1 - r0, c1 - c0)

        m.value = value
        m.need = lambda r0, r1, c0, c1: [(src, (r0, r1, c0, c1))]
        self._add(m, src.R, n)

    def _masked_conv(self, n, name, mod: MaskedConv2d, value, where) -> None:
        src = self._map_arg(n.args[0], where)
        m = _Map(name, value)
        taps_r, taps_c = mod._taps
        mask = mod.mask != 0  # [C_out, C_in, kh, kw]
        used = mask.any(0)  # [C_in, kh, kw]: input channels each tap reads
        seen = used.any(0).nonzero().tolist()
        a_lo, a_hi = min(a for a, _ in seen), max(a for a, _ in seen)
        b_lo, b_hi = min(b for _, b in seen), max(b for _, b in seen)
        dh, dw = mod.dilation
        tr0, tr1, tc0, tc1 = taps_r[a_lo], taps_r[a_hi], taps_c[b_lo], taps_c[b_hi]
        R = torch.full((m.H, m.W), -1, dtype=torch.int64)
        for a, b in seen:
            R_tap = src.chan_R[used[:, a, b]].amax(0) if src is self._input else src.R
            R = torch.maximum(R, _shifted(R_tap, taps_r[a], taps_c[b], m.H, m.W))
        # One position: the taps any channel pair keeps, gathered from src.flat by a precomputed index per
        # position ([H * W, T]; taps outside src read its zero position), times the weight at those taps
        # ([C_out, T * C_in], the taps' order): one index_select and one matrix product, no masked tap.
        tap_a = torch.tensor([a for a, _ in seen])
        tap_b = torch.tensor([b for _, b in seen])
        rr = torch.arange(m.H)[:, None, None] + torch.tensor([taps_r[a] for a, _ in seen])  # [H, 1, T]
        cc = torch.arange(m.W)[None, :, None] + torch.tensor([taps_c[b] for _, b in seen])  # [1, W, T]
        inside = (rr >= 0) & (rr < src.H) & (cc >= 0) & (cc < src.W)
        index = torch.where(inside, rr * src.W + cc, src.H * src.W).reshape(m.H * m.W, -1)
        index = index.to(src.cache.device)
        index = list(index.unbind(0))
        key, bn = [None, None], [None]

        params, buffers = mod._parameters, mod._buffers

        def weight():
            """(masked box weight, [C_out, T * C_in] tap weight, bias), with a following BatchNorm folded in."""
            w, mk, b = params["weight"], buffers["mask"], params["bias"]
            k = (w.data_ptr(), w._version, mk._version, b is not None and (b.data_ptr(), b._version))
            k = k + _bn_key(bn[0]) if bn[0] is not None else k
            if key[0] != k:
                wm = w * mk
                if bn[0] is not None:
                    scale, shift = _bn_scale_shift(bn[0])
                    wm = wm * scale[:, None, None, None]
                    b = shift if b is None else torch.addcmul(shift, b, scale)
                # [T * C_in, C_out], contiguous: addmm on it beat F.linear on [C_out, T * C_in] (8.4 against
                # 13.3 us at 16 x 800 x 32, one thread)
                taps = wm[:, :, tap_a, tap_b].permute(2, 1, 0).reshape(-1, wm.shape[0]).contiguous()
                key[0], key[1] = k, (wm[:, :, a_lo : a_hi + 1, b_lo : b_hi + 1], taps, b)
            return key[1]

        bufs = {}

        def value(r0, r1, c0, c1):
            wm, w_taps, b = weight()
            if r1 - r0 == 1 and c1 - c0 == 1:
                # Into buffers made once (a step's allocations and views cost as much as its gather): the value
                # is consumed before the next call, by this map's write or by its one position-wise reader.
                buf = bufs.get(w_taps.dtype)
                if buf is None:
                    B, T = src.flat.shape[0], index[0].numel()
                    win = src.flat.new_empty(B, T, src.flat.shape[2])  # [B, T, C_in]
                    y = w_taps.new_empty(B, w_taps.shape[1])  # [B, C_out]
                    buf = bufs[w_taps.dtype] = (win, win.view(B, -1), y, y.view(B, -1, 1, 1))
                win, win2, y, y4 = buf
                torch.index_select(src.flat, 1, index[r0 * m.W + c0], out=win)
                if b is None:
                    torch.mm(win2, w_taps, out=y)
                else:
                    torch.addmm(b, win2, w_taps, out=y)
                return y4
            win = _window_read(src.cache, r0 + tr0, r1 - 1 + tr1, c0 + tc0, c1 - 1 + tc1)
            return F.conv2d(win, wm, b, dilation=(dh, dw))

        def fold_bn(mod_bn):
            bn[0], key[0] = mod_bn, None
            m.fold_bn = None

        m.fold_bn = fold_bn

        def need(r0, r1, c0, c1):
            box = (max(r0 + tr0, 0), min(r1 + tr1, src.H), max(c0 + tc0, 0), min(c1 + tc1, src.W))
            return [(src, box)] if box[0] < box[1] and box[2] < box[3] else []

        m.value, m.need = value, need
        self._add(m, R, n)


# -- helpers ---------------------------------------------------------------------------------------------------
def _kwarg(n: fx.Node, name: str, pos: int, default):
    return n.args[pos] if len(n.args) > pos else n.kwargs.get(name, default)


def _conv1x1(conv: nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """A 1x1 nn.Conv2d on a box; one position as a matrix product (cheaper than a convolution call)."""
    params = conv._parameters
    key, w_t = [None], [None]

    def fn(x):
        w, b = params["weight"], params["bias"]
        if x.shape[-2:] == (1, 1):
            k = (w.data_ptr(), w._version)
            if key[0] != k:  # [C_in, C_out], contiguous (see _NodeKinds._masked_conv)
                key[0], w_t[0] = k, w.view(w.shape[0], -1).t().contiguous()
            x2 = x.reshape(x.shape[0], -1)
            y = torch.mm(x2, w_t[0]) if b is None else torch.addmm(b, x2, w_t[0])
            return y.view(x.shape[0], -1, 1, 1)
        return F.conv2d(x, w, b)

    return fn


def _bn_key(bn: nn.Module) -> tuple:
    """What an eval-mode BatchNorm's affine map depends on: its statistics and parameters, by version."""
    mean, var = bn._buffers["running_mean"], bn._buffers["running_var"]
    w, b = bn._parameters["weight"], bn._parameters["bias"]
    return (mean._version, var._version, mean.data_ptr(), var.data_ptr(), w is not None and w._version,
            b is not None and b._version, w is not None and w.data_ptr(), b is not None and b.data_ptr())  # fmt: skip


def _bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as x * scale + shift: ([C], [C])."""
    mean, var = bn._buffers["running_mean"], bn._buffers["running_var"]
    w, b = bn._parameters["weight"], bn._parameters["bias"]
    scale = torch.rsqrt(var + bn.eps)
    if w is not None:
        scale = scale * w
    shift = -mean * scale + (b if b is not None else 0)
    return scale, shift


def _bn_affine(bn: nn.Module, nd: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Eval-mode BatchNorm as x * scale + shift, refreshed when its statistics or parameters change."""
    key, cached = [None], [None]
    shape = (-1,) + (1,) * (nd - 2)

    def fn(x):
        k = _bn_key(bn)
        if key[0] != k:
            scale, shift = _bn_scale_shift(bn)
            key[0], cached[0] = k, (scale.reshape(shape), shift.reshape(shape))
        scale, shift = cached[0]
        return torch.addcmul(shift, x, scale)

    return fn


def _window_read(x: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """x[..., r0:r1+1, c0:c1+1] (inclusive ends), zeros outside x."""
    H, W = x.shape[-2:]
    lo_r, hi_r, lo_c, hi_c = max(r0, 0), min(r1 + 1, H), max(c0, 0), min(c1 + 1, W)
    win = x[..., lo_r:hi_r, lo_c:hi_c]
    if (lo_r, hi_r, lo_c, hi_c) != (r0, r1 + 1, c0, c1 + 1):
        win = F.pad(win, (lo_c - c0, c1 + 1 - hi_c, lo_r - r0, r1 + 1 - hi_r))
    return win


def _shifted(R: torch.Tensor, dr: int, dc: int, H: int, W: int) -> torch.Tensor:
    """out[i, j] = R[i + dr, j + dc], -1 (no dependency) outside R: [H, W]."""
    out = torch.full((H, W), -1, dtype=torch.int64)
    i0, i1 = max(0, -dr), min(H, R.shape[0] - dr)
    j0, j1 = max(0, -dc), min(W, R.shape[1] - dc)
    if i0 < i1 and j0 < j1:
        out[i0:i1, j0:j1] = R[i0 + dr : i1 + dr, j0 + dc : j1 + dc]
    return out


def _norm_dim(d, nd: int):
    return d + nd if isinstance(d, int) and d < 0 else d


def _dim_arg(n: fx.Node, pos: int, nd: int = 4, default=0):
    """The `dim` argument of n (positional index pos, counting the tensor), normalised for an nd-D value."""
    return _norm_dim(_kwarg(n, "dim", pos, default), nd)


def _unsupported(where: str, why: str) -> TypeError:
    return TypeError(f"sk.incremental cannot step {where}: {why}. It steps {SUPPORTED}.")
