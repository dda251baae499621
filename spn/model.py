"""SPN: a Subscale Pixel Network with an exact log-likelihood, size and depth upscaling, and sampling.

The distribution, exactly. Slice k = i*s + j of an image x [B, C, N, N] is x[:, :, i::s, j::s] (n x n,
n = N/s). Slices are generated in order k = 0 .. s*s-1 (from 1 when slice 0 is given); inside a slice,
pixels in raster order; inside a pixel, channels 0 .. C-1. For slice k the context network sees slices < k
(spn_kernels.slice_context) and the target's index k; the slice decoder sees the slice's earlier pixels; the
channel head sees the pixel's earlier channels. With cond_bits = b the image's low bits - b bits are
modelled and the high b bits of every sub-pixel are given (to the context network and to every decoder block).
Conditional models (classes > 0, cond_channels > 0) are given labels and cond the same way (spn/conditioning.py).
"""

from __future__ import annotations

import math
import warnings
import weakref

import torch
from torch import nn

import spn_kernels as sk

from .cache import InferenceCache
from .conditioning import check_cond, check_labels, cond_slice, feature_channels
from .config import SPNConfig
from .context import ContextNetwork
from .decoder import SliceDecoder
from .heads import LOG_SCALE_MIN, CategoricalHead, build_head
from .sampling import sample as _sample
from .values import check_int_tensor, scale


class SPN(nn.Module):
    """A Subscale Pixel Network: context network + masked slice decoder + per-pixel channel head.

    ``log_prob(x)`` is exact (sum of the per-sub-pixel categorical log-probabilities in the order above);
    ``loss(x)`` is the training loss in bits/dim; ``sample(n)`` generates images (see spn/sampling.py).

    Example:
        >>> cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2)
        >>> model = SPN(cfg)
        >>> x = torch.randint(0, 4, (3, 1, 4, 4))
        >>> model.log_prob(x).shape, model.bits_per_dim(x).dtype
        (torch.Size([3]), torch.float64)
    """

    def __init__(self, config: SPNConfig) -> None:
        super().__init__()
        if not isinstance(config, SPNConfig):
            raise ValueError(f"config must be an SPNConfig, got {type(config).__name__}")
        self.config = config.validate()
        cfg = config
        self.context = ContextNetwork(cfg)
        # The decoder's conditioning: the context embedding, plus the target slice's own high bits when
        # depth upscaling (our choice: the most informative part of the condition, handed over directly), and the
        # label and cond features of conditional models.
        self.cond_channels = cfg.context_channels + (cfg.channels if cfg.cond_bits else 0) + feature_channels(cfg)
        self.decoder = SliceDecoder(cfg, self.cond_channels)
        self.head = build_head(
            cfg.output, cfg.decoder_channels, cfg.channels, cfg.head_channels, cfg.num_classes, cfg.mixtures
        )
        # Created last and only when used: an unconditional model keeps its parameters and their initialisation.
        self.label_embedding = nn.Embedding(cfg.classes, cfg.context_channels) if cfg.classes else None

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        return self.head.out_w.dtype

    @property
    def device(self) -> torch.device:
        return self.head.out_w.device

    def check_image(self, x: object, name: str = "x") -> torch.Tensor:
        """Validates a full image [B, C, N, N] with values in [0, 2^bits); returns it as int64."""
        cfg = self.config
        return check_int_tensor(
            x, name, (-1, cfg.channels, cfg.image_size, cfg.image_size), cfg.bits, f"[B, C, N, N] with {cfg.bits} bits"
        )

    def split_bits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full-depth int64 image -> (low model_bits bits, high cond_bits bits or None)."""
        mb = self.config.model_bits
        if not self.config.cond_bits:
            return x, None
        return x & (2**mb - 1), x >> mb

    def check_conditioning(self, labels: object, cond: object, batch: int) -> tuple[torch.Tensor | None, ...]:
        """Validates labels and cond for a batch of ``batch`` images (ValueError naming the argument and its shape);
        returns them as the model uses them: int64 labels on its device, cond in its dtype (or None)."""
        cfg = self.config
        return (check_labels(labels, cfg, batch, self.device), check_cond(cond, cfg, batch, self.device, self.dtype))

    def features(self, labels: torch.Tensor | None, cond: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor | None:
        """The label and cond features of target slices t [B]: [B, F, n, n] (None for an unconditional model).
        labels int64 [B], cond [B, D] or [B, D, N, N], as check_conditioning returns them."""
        cfg, n = self.config, self.config.slice_size
        if (labels is None) != (not cfg.classes) or (cond is None) != (not cfg.cond_channels):
            raise ValueError(f"this model needs labels exactly when classes > 0 (classes={cfg.classes}) and cond "
                             f"exactly when cond_channels > 0 (cond_channels={cfg.cond_channels})")  # fmt: skip
        parts = []
        if labels is not None:
            parts.append(self.label_embedding(labels)[:, :, None, None].expand(-1, -1, n, n))
        if cond is not None:
            parts.append(cond_slice(cond, cfg.subscale, t).expand(-1, -1, n, n))
        return torch.cat(parts, 1) if parts else None

    def condition(
        self,
        low: torch.Tensor,
        high: torch.Tensor | None,
        t: torch.Tensor,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The decoder's conditioning map for target slices t [B]: [B, cond_ch, n, n].

        low: int64 [B, C, N, N] (only slices < t[b] are read); high: int64 [B, C, N, N] or None; labels and cond
        as check_conditioning returns them (None for an unconditional model)."""
        cfg, be = self.config, self.config.backend
        ctx = sk.slice_context(low, cfg.subscale, t, cfg.model_bits, backend=be)
        if high is not None:
            # Every slice of the high bits is known: t = s*s marks them all present.
            ctx = torch.cat([ctx, sk.slice_context(high, cfg.subscale, cfg.num_slices, cfg.cond_bits, backend=be)], 1)
        feats = self.features(labels, cond, t)  # given for the whole image: every position may see them
        ctx = ctx.to(self.dtype)
        if feats is not None:
            ctx = torch.cat([ctx, feats], 1)
        out = self.context(ctx, t)
        if high is not None:
            high_t = _pick(sk.subscale_split(high, cfg.subscale, backend=be), t)
            out = torch.cat([out, scale(high_t, cfg.cond_bits, self.dtype)], 1)
        if feats is not None:
            out = torch.cat([out, feats], 1)
        return out

    def slice_logits(self, target: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of a slice: target int64 [B, C, n, n], cond [B, cond_ch, n, n] ->
        [B, n, n, C, K] (pixel-last; K = 2^(bits - cond_bits)). For output="logistic_mixture" the rows are
        normalised log-probabilities."""
        xs = scale(target, self.config.model_bits, self.dtype)
        hidden = self.decoder(xs, cond)  # [B, D, n, n]
        return self.head(hidden.permute(0, 2, 3, 1), xs.permute(0, 2, 3, 1))

    def _slice_log_prob(self, low, high, t, labels=None, cond=None) -> torch.Tensor:
        """log p(slice t[b] | its conditions) per sub-pixel: [B, n, n, C] in the model's dtype."""
        target = _pick(sk.subscale_split(low, self.config.subscale, backend=self.config.backend), t)
        xs = scale(target, self.config.model_bits, self.dtype)
        hidden = self.decoder(xs, self.condition(low, high, t, labels, cond))  # [B, D, n, n]
        return self.head.log_prob(hidden.permute(0, 2, 3, 1), xs.permute(0, 2, 3, 1), target.permute(0, 2, 3, 1))

    # ------------------------------------------------------------------------------------------ public API
    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None):
        """Exact log-likelihood in nats, float64 [B], of integer images x [B, C, N, N] in [0, 2^bits).

        First-slice-given models return log p(slices >= 1 | slice 0); depth-upscaling models take the
        full-depth image and return log p(low bits | high bits). Class-conditional models (classes > 0) take
        labels int [B] and return log p(x | label); models with cond_channels = D take cond [B, D] or
        [B, D, N, N] and return log p(x | cond). Runs one slice at a time (memory ~ one slice batch)."""
        x = self.check_image(x)
        labels, cond = self.check_conditioning(labels, cond, x.shape[0])
        low, high = self.split_bits(x)
        B = x.shape[0]
        total = torch.zeros(B, dtype=torch.float64, device=x.device)
        for k in range(self.config.first_slice, self.config.num_slices):
            t = torch.full((B,), k, dtype=torch.int64, device=x.device)
            total = total + self._slice_log_prob(low, high, t, labels, cond).to(torch.float64).sum((1, 2, 3))
        return total

    def bits_per_dim(self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None):
        """-log2 p / (number of modelled sub-pixels), float64 [B]. The count covers only what the model
        generates (slices >= 1 for size upscaling; the low bits' sub-pixels for depth upscaling)."""
        return -self.log_prob(x, labels, cond) / (self.config.modeled_dims * math.log(2))

    def loss(
        self,
        x: torch.Tensor,
        slices_per_step: int | None = None,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training loss: mean bits/dim over the batch (scalar, differentiable, the model's dtype).

        slices_per_step=None uses every modelled slice of every image. slices_per_step=m draws m distinct
        slices per image uniformly at random and scales their negative log-likelihood by M/m (M modelled
        slices): an unbiased estimate of the full loss at m/M of the cost. labels and cond as in log_prob."""
        x = self.check_image(x)
        if x.shape[0] == 0:
            raise ValueError(f"loss: x {tuple(x.shape)} holds no images; the mean loss of an empty batch is undefined")
        labels, cond = self.check_conditioning(labels, cond, x.shape[0])
        cfg = self.config
        low, high = self.split_bits(x)
        B, M = x.shape[0], cfg.num_slices - cfg.first_slice
        if slices_per_step is None:
            m = M
            ks = torch.arange(cfg.first_slice, cfg.num_slices, device=x.device).repeat(B, 1)  # [B, M]
        else:
            if not isinstance(slices_per_step, int) or not 1 <= slices_per_step <= M:
                raise ValueError(f"slices_per_step must be an int in 1..{M} (modelled slices), got {slices_per_step!r}")
            m = slices_per_step
            ks = torch.rand(B, M, device=x.device).argsort(1)[:, :m] + cfg.first_slice  # [B, m]
        rows = torch.arange(B, device=x.device).repeat_interleave(m)
        high_r, labels_r, cond_r = (None if v is None else v[rows] for v in (high, labels, cond))
        lp = self._slice_log_prob(low[rows], high_r, ks.reshape(-1), labels_r, cond_r)  # [B*m, n, n, C]
        nll = -lp.reshape(B, -1).sum(1) * (M / m)
        return (nll / (cfg.modeled_dims * math.log(2))).mean()

    def needs_conditioning(self) -> bool:
        """Whether sample() needs an image to condition on: slice 0 (size upscaling) or the high bits (depth)."""
        return self.config.first_slice_given or self.config.cond_bits > 0

    def conditioning_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sample() keywords that condition on images x [n, C, N, N] in [0, 2^bits): first_slice (size
        upscaling) or high_bits (depth upscaling); {} for an unconditional model."""
        cfg = self.config
        if cfg.first_slice_given:
            return {"first_slice": x[:, :, :: cfg.subscale, :: cfg.subscale].contiguous()}
        if cfg.cond_bits:
            return {"high_bits": x >> cfg.model_bits}
        return {}

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        return_log_prob: bool = False,
        method: str = "cached",
        first_slice: torch.Tensor | None = None,
        high_bits: torch.Tensor | None = None,
        progress: bool = False,
        *,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        **kwargs,
    ):
        """Generates n images, int64 [n, C, N, N]; see spn.sampling.sample for every argument."""
        return _sample(self, n, temperature, generator, return_log_prob, method, first_slice, high_bits, progress,
                       labels=labels, cond=cond, **kwargs)  # fmt: skip

    # ------------------------------------------------------------------------------------------ cached decoding
    # Per slice: start_slice(cache, cond), then decode_slice(cache, ...), which is one fused call (CPU, no decoder
    # attention) or, for every sub-pixel in raster order (row, column, channel),
    # logits = step(cache, row, col, channel), a draw, and write(cache, value, row, col, channel).
    @torch.no_grad()
    def allocate_inference_cache(
        self, batch: int, dtype: torch.dtype | None = None, device=None, cuda_graphs: bool | None = None
    ) -> InferenceCache:
        """The decoding state of a batch of ``batch`` images, allocated once and reused for every slice. It holds
        the eval-mode weights packed for the step: allocate a new one after changing the weights.

        cuda_graphs (CUDA only): None captures each pixel's whole decoding (decoder step, channel head, draws from
        the slice's pre-drawn uniforms, cache writes) in a CUDA graph on the first slice and replays it on the
        others, warning once and staying eager if a capture fails; True raises instead; False stays eager."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        dtype = self.dtype if dtype is None else dtype
        device = self.device if device is None else torch.device(device)
        cfg = self.config
        use_graphs = device.type == "cuda" and cuda_graphs is not False
        cache = InferenceCache(
            decoder=self.decoder.allocate_inference_cache(batch, dtype, device),
            head=self.head.step_weights(),
            base=torch.zeros(batch, cfg.channels, cfg.head_channels, dtype=dtype, device=device),
            levels=scale(torch.arange(2**cfg.model_bits, device=device), cfg.model_bits, dtype),
            graphs={} if use_graphs else None,
            graphs_required=bool(cuda_graphs) and use_graphs,
            u=torch.zeros(cfg.slice_size**2 * cfg.channels, batch, dtype=torch.float64, device=device),
            values=torch.zeros(cfg.slice_size**2 * cfg.channels, batch, dtype=torch.int64, device=device),
            log_p=torch.zeros(cfg.slice_size**2 * cfg.channels, batch, dtype=torch.float64, device=device),
        )
        if device.type == "cpu" and not cfg.decoder_attention:
            blocks, w = cache.decoder.blocks, cache.head
            lists = [[getattr(b, f) for b in blocks] for f in ("row_term", "cond_v", "cond_h", "w_v", "w_h", "w_vh")]
            cache.rows = (cache.decoder.pixels, [b.v_in for b in blocks[1:]], [b.h_in for b in blocks[1:]], *lists,
                          [b.w_out for b in blocks], [b.b_out for b in blocks], w["inp"], w["bias"], w["prev"],
                          w["out_w"], w["out_b"], 0 if isinstance(self.head, CategoricalHead) else cfg.mixtures,
                          LOG_SCALE_MIN, cache.levels)  # fmt: skip
        return cache

    def kept_inference_cache(self, batch: int, cuda_graphs: bool | None = None) -> InferenceCache:
        """allocate_inference_cache(batch, cuda_graphs=...), kept between sample() calls where CUDA graphs are
        captured, so that the graphs are reused while the weights are unchanged (a changed or replaced parameter
        allocates afresh). Only the newest such cache is kept per model; elsewhere a new cache every call."""
        if self.device.type != "cuda" or cuda_graphs is False:
            return self.allocate_inference_cache(batch, cuda_graphs=cuda_graphs)
        weights = tuple((p.data_ptr(), p._version) for p in self.parameters())  # _version: bumped by in-place updates
        key = (batch, self.dtype, self.device, cuda_graphs, weights)
        kept = _KEPT_CACHES.get(self)
        if kept is None or kept[0] != key:
            kept = (key, self.allocate_inference_cache(batch, cuda_graphs=cuda_graphs))
            _KEPT_CACHES[self] = kept
        return kept[1]

    @torch.no_grad()
    def start_slice(self, cache: InferenceCache, cond: torch.Tensor) -> None:
        """Empties ``cache`` for a new slice with the decoder's conditioning cond [B, cond_ch, n, n]
        (from condition())."""
        self.decoder.start_slice(cache.decoder, cond)
        cache.next = 0

    def step(self, cache: InferenceCache, row: int, col: int, channel: int) -> torch.Tensor:
        """Logits [B, K] of sub-pixel (row, col, channel) of the current slice, given every earlier sub-pixel
        (written with write()). Sub-pixels run in raster order. Run it under torch.no_grad()."""
        cfg = self.config
        i = (row * cfg.slice_size + col) * cfg.channels + channel
        if i != cache.next:
            r, rest = divmod(cache.next, cfg.slice_size * cfg.channels)
            raise ValueError(f"step({row}, {col}, {channel}): sub-pixels run in raster order; next is "
                             f"({r}, {rest // cfg.channels}, {rest % cfg.channels})")  # fmt: skip
        if channel == 0:
            dec = cache.decoder
            if dec.rows_done < row:
                self.decoder.step_row(dec, row - 1)
            cache.base = self.head.step_base(cache.head, self.decoder.step(dec, row, col))
            cache.pixel = dec.pixels[:, dec.pad + row, dec.pad + col]
        return self.head.step_channel(cache.head, cache.base, cache.pixel, channel)

    @torch.no_grad()
    def decode_slice(
        self, cache: InferenceCache, u: torch.Tensor, temperature: float, values: torch.Tensor, log_p: torch.Tensor
    ) -> None:
        """Samples the current slice (after start_slice) whole, in raster order: u float64 [n*n*C, B] holds one
        uniform per sub-pixel in generation order (row, column, channel); the drawn values (int64) and their
        log-probabilities at temperature 1 (float64, NaN where the logits were not finite) are written into
        values and log_p [n*n*C, B]. On CPU without decoder attention this is one fused spn_kernels.decode_rows
        call (either head); otherwise step(), a draw and write() per sub-pixel (the same values)."""
        cfg = self.config
        n, C = cfg.slice_size, cfg.channels
        be = "torch" if cfg.backend == "torch" else None
        if cache.rows is not None and cache.next == 0:
            args = (*cache.rows, u, temperature, values, log_p, 0, n)
            if not cache.rows_checked:
                sk.decode_rows_check(*args)
                cache.rows_checked = True
            sk.decode_rows(*args, backend=be, checked=True)
            cache.decoder.rows_done, cache.next = n - 1, n * n * C
            return
        if cache.graphs is not None and cache.graph_temperature != temperature:
            cache.graphs.clear()  # the temperature is part of every captured pixel
        cache.graph_temperature = temperature
        cache.u.copy_(u)  # the graphs read the slice's uniforms from this static buffer
        dec = cache.decoder
        for r in range(cache.next // (n * C), n):
            if dec.rows_done < r:
                self.decoder.step_row(dec, r - 1)
            for c in range(n):
                self._pixel(cache, r, c, temperature)
        cache.next = n * n * C
        values.copy_(cache.values)
        log_p.copy_(cache.log_p)

    def _pixel(self, cache: InferenceCache, row: int, col: int, temperature: float) -> None:
        """Every channel of pixel (row, col), into the cache's static buffers; on CUDA replayed from a graph."""
        if cache.graphs is None:
            return self._pixel_body(cache, row, col, temperature)
        graph = cache.graphs.get((row, col))
        if graph is None:
            try:
                graph = self._capture(cache, row, col, temperature)
            except Exception as e:  # noqa: BLE001  (any capture failure: said out loud, never silent)
                if cache.graphs_required:
                    raise RuntimeError(f"CUDA graph capture of the decoding step failed: {e}") from e
                warnings.warn(f"CUDA graph capture of the decoding step failed ({type(e).__name__}: {e}); "
                              "sampling continues without CUDA graphs (pass cuda_graphs=True to make this an "
                              "error)", RuntimeWarning, stacklevel=4)  # fmt: skip
                cache.graphs = None
                return self._pixel_body(cache, row, col, temperature)
            cache.graphs[(row, col)] = graph
        graph.replay()

    def _pixel_body(self, cache: InferenceCache, row: int, col: int, temperature: float) -> None:
        """The work of one pixel with no host synchronisation and no generator (what a graph captures): the
        decoder step, then per channel the head, the draw with cache.u, and the write into the decoder's cache."""
        cfg = self.config
        C, dec = cfg.channels, cache.decoder
        be = "torch" if cfg.backend == "torch" else None  # CPU: the C++ draw; CUDA: the Triton one
        base = self.head.step_base(cache.head, self.decoder.step(dec, row, col))
        pixel = dec.pixels[:, dec.pad + row, dec.pad + col]
        i = (row * cfg.slice_size + col) * C
        for ch in range(C):
            logits = self.head.step_channel(cache.head, base, pixel, ch)
            sk.categorical_draw_(logits, cache.u[i + ch], temperature, cache.values[i + ch], cache.log_p[i + ch],
                                 backend=be, checked=True)  # fmt: skip
            pixel[:, ch] = cache.levels.index_select(0, cache.values[i + ch])

    def write(self, cache: InferenceCache, value: torch.Tensor, row: int, col: int, channel: int) -> None:
        """Stores the drawn integer value [B] of sub-pixel (row, col, channel), the one just stepped."""
        cache.pixel[:, channel] = cache.levels.index_select(0, value)
        cache.next += 1

    def _capture(self, cache: InferenceCache, row: int, col: int, temperature: float):
        """Captures pixel (row, col) on the cache's static buffers; all pixels share one memory pool."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: it computes this slice's pixel, which the replay then redoes
            self._pixel_body(cache, row, col, temperature)
        torch.cuda.current_stream().wait_stream(side)
        if cache.graph_pool is None:
            cache.graph_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: a DataLoader's pin-memory thread cannot invalidate the capture
        with torch.cuda.graph(graph, pool=cache.graph_pool, capture_error_mode="thread_local"):
            self._pixel_body(cache, row, col, temperature)
        return graph

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"{self.config}, parameters={n:,}"


# model -> (key, InferenceCache) of kept_inference_cache; weak, so a kept cache never outlives its model, and never
# travels with it (state_dict, deepcopy and pickling do not see it)
_KEPT_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pick(slices: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """slices [B, S2, C, n, n], t [B] -> slices[b, t[b]] [B, C, n, n]."""
    return slices[torch.arange(slices.shape[0], device=slices.device), t]
