"""StripedHyena 2 (the Evo 2 architecture) in plain PyTorch.

An independent implementation written from ``../shared/evo2_parity/ARCHITECTURE.md``.
It reads the official YAML config fields and the official state-dict key names, so
module names (``embedding_layer``, ``blocks.N``, ``blocks.N.filter``,
``blocks.N.inner_mha_cls``, ``blocks.N.mlp.l3``, ``norm``) are the ones forward hooks
on the official model see.

Blocks: hyena short-explicit (``hcs``), medium-regularized (``hcm``), long-implicit
modal (``hcl``) and multi-head attention with rotary embeddings (``attn``). Every block
is pre-norm with a mixer residual and a gated-MLP residual.

Prefix reuse: ``StripedHyena.forward(ids, caches)`` accepts one :class:`LayerCache`
per block. In ``record`` mode a block keeps what a later suffix pass needs (its input
rows for the hyena FIR history, the pre-gate signal for the long filter, post-rotary
keys/values for attention). In ``suffix`` mode the block only computes rows
``start..L-1`` and reads its history from the recorded reference.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

# --------------------------------------------------------------------------- config

#: Defaults for fields an official YAML may omit (values of the Evo 2 configs).
CONFIG_DEFAULTS: dict[str, Any] = {
    "vocab_size": 512,
    "short_filter_length": 3,
    "short_filter_bias": False,
    "hcs_filter_length": 7,
    "hcm_filter_length": 128,
    "state_size": 16,
    "proj_groups": 1,
    "qkv_proj_bias": False,
    "mha_out_proj_bias": True,
    "hyena_out_proj_bias": True,
    "hyena_flip_x1x2": False,
    "interleave": True,
    "column_split_hyena": False,
    "column_split": True,
    "eps": 1e-6,
    "rotary_emb_base": 10000,
    "use_interpolated_rotary_pos_emb": False,
    "rotary_emb_scaling_factor": 1,
    "inner_size_multiple_of": 16,
    "model_parallel_size": 1,
    "mlp_activation": "gelu",
    "evo2_style_activations": True,
    "tie_embeddings": True,
    "final_norm": True,
    "prefill_style": "fft",
    "max_seqlen": 8192,
    "max_batch_size": 1,
}

_REQUIRED = ("hidden_size", "num_layers", "num_attention_heads", "hcs_layer_idxs",
             "hcm_layer_idxs", "hcl_layer_idxs", "attn_layer_idxs")


class StripedHyenaConfig(dict):
    """The official Evo 2 YAML fields as a dict with attribute access."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        for key, value in CONFIG_DEFAULTS.items():
            self.setdefault(key, value)
        missing = [k for k in _REQUIRED if k not in self]
        if missing:
            raise ValueError(f"StripedHyena config is missing required field(s) {missing}")
        if self["hidden_size"] % self["num_attention_heads"]:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        self.setdefault("hcs_filter_groups", self["hidden_size"])
        self.setdefault("hcm_filter_groups", self["hidden_size"])
        if "inner_mlp_size" not in self or self["inner_mlp_size"] is None:
            mult = int(self["inner_size_multiple_of"]) * int(self["model_parallel_size"])
            width = int(8 * self["hidden_size"] / 3)
            self["inner_mlp_size"] = mult * ((width + mult - 1) // mult)
        if not self["final_norm"]:
            raise ValueError("final_norm: False is not supported (the official forward fails too)")
        kinds = self.layer_kinds()  # validates the index lists
        del kinds

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err

    def layer_kinds(self) -> list[str]:
        """Block type per layer index: ``hcs``, ``hcm``, ``hcl`` or ``attn``."""
        kinds: list[str | None] = [None] * int(self["num_layers"])
        for kind in ("hcs", "hcm", "hcl", "attn"):
            for idx in self[f"{kind}_layer_idxs"]:
                if not 0 <= idx < len(kinds) or kinds[idx] is not None:
                    raise ValueError(f"{kind}_layer_idxs: index {idx} is out of range or listed twice")
                kinds[idx] = kind
        unset = [i for i, k in enumerate(kinds) if k is None]
        if unset:
            raise ValueError(f"layer(s) {unset} are in none of the *_layer_idxs lists")
        return kinds  # type: ignore[return-value]

    @classmethod
    def from_file(cls, path: str | Path) -> "StripedHyenaConfig":
        """Read an official YAML (``.yml``/``.yaml``) or a JSON config."""
        path = Path(path)
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config fields")
        return cls(data)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(dict(self), sort_keys=False))


def layer_pattern(num_layers: int, attn: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Evo 2's block pattern: attention at ``attn`` (default every 7th block from 3:
    3, 10, 17, …) and the other blocks cycling hcs, hcm, hcl (as in the official
    ``evo2/configs/*.yml``; the 40B model's attention blocks are 3, 10, 17, 24, 31,
    35, 42, 49, so pass them)."""
    attn_set = set(range(3, num_layers, 7) if attn is None else attn)
    if any(not 0 <= i < num_layers for i in attn_set):
        raise ValueError(f"attention block indices {sorted(attn_set)} outside 0..{num_layers - 1}")
    out: dict[str, list[int]] = {f"{k}_layer_idxs": [] for k in ("hcs", "hcm", "hcl", "attn")}
    j = 0
    for i in range(num_layers):
        if i in attn_set:
            out["attn_layer_idxs"].append(i)
        else:
            out[f"{('hcs', 'hcm', 'hcl')[j % 3]}_layer_idxs"].append(i)
            j += 1
    return out


def tiny_config(hidden_size: int = 64, num_layers: int = 8, num_attention_heads: int = 4,
                inner_mlp_size: int | None = None, channels_per_group: int = 16,
                hcm_filter_length: int = 128, rotary_scaling: float | None = None,
                **overrides: Any) -> StripedHyenaConfig:
    """A small Evo 2-style config with the 7B layer pattern (ends with attention if
    ``num_layers`` is 8 or 32). Extra keyword arguments override any field."""
    groups = max(1, hidden_size // channels_per_group)
    cfg: dict[str, Any] = {
        "model_name": f"tiny-sh2-d{hidden_size}-l{num_layers}",
        "vocab_size": 512,
        "hidden_size": hidden_size,
        "num_filters": hidden_size,
        "num_layers": num_layers,
        "num_attention_heads": num_attention_heads,
        "hcs_filter_groups": groups,
        "hcm_filter_groups": groups,
        "hcl_filter_groups": hidden_size,
        "hcm_filter_length": hcm_filter_length,
        "inner_mlp_size": inner_mlp_size or 16 * math.ceil(8 * hidden_size / 3 / 16),
        "use_interpolated_rotary_pos_emb": rotary_scaling is not None,
        "rotary_emb_scaling_factor": rotary_scaling or 1,
        "max_seqlen": 8192,
        **layer_pattern(num_layers),
    }
    if num_layers == 8:  # the parity model's pattern: ends with attention like the 7B
        cfg.update(hcs_layer_idxs=[0, 4], hcm_layer_idxs=[1, 5], hcl_layer_idxs=[2, 6],
                   attn_layer_idxs=[3, 7])
    cfg.update(overrides)
    return StripedHyenaConfig(cfg)


# --------------------------------------------------------------------------- prefix caches

@dataclass
class LayerCache:
    """Per-block state for prefix reuse.

    ``mode="record"``: the block stores its reference state in ``store``.
    ``mode="suffix"``: the block computes rows ``start..`` only, reading ``store``.
    """

    mode: str
    store: dict = field(default_factory=dict)
    start: int = 0


# --------------------------------------------------------------------------- layers

class RMSNorm(nn.Module):
    """``scale * x / (||x||_2 / sqrt(D) + eps)``; computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        rms = torch.linalg.vector_norm(xf, dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
        return (self.scale.float() * (xf / (rms + self.eps))).to(x.dtype)


class GatedMLP(nn.Module):
    """``l3(act(l1 z) * l2 z)``; ``act`` is the identity when ``identity=True``."""

    def __init__(self, dim: int, inner: int, activation: str, identity: bool) -> None:
        super().__init__()
        self.l1 = nn.Linear(dim, inner, bias=False)
        self.l2 = nn.Linear(dim, inner, bias=False)
        self.l3 = nn.Linear(inner, dim, bias=False)
        if identity:
            self.act: nn.Module = nn.Identity()
        elif activation == "gelu":
            self.act = nn.GELU(approximate="none")
        elif activation == "silu":
            self.act = nn.SiLU()
        else:
            raise ValueError(f"unknown mlp_activation {activation!r} (use gelu or silu)")

    def forward(self, z: Tensor) -> Tensor:
        return self.l3(self.act(self.l1(z)) * self.l2(z))


def fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes pocketFFT/cuFFT handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_causal_conv(s: Tensor, h: Tensor) -> Tensor:
    """Causal convolution ``y[t] = sum_tau h[tau] s[t - tau]`` along the last axis, by FFT.

    ``s`` (B, C, T) and ``h`` (C, K) in fp32; taps beyond ``T`` are not used."""
    T = s.shape[-1]
    h = h[..., :T]
    n = fft_size(T + h.shape[-1] - 1)
    Hf = torch.fft.rfft(h, n=n) / n
    Uf = torch.fft.rfft(s, n=n)
    return torch.fft.irfft(Uf * Hf, n=n, norm="forward")[..., :T]


def _depthwise_fir(x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
    """Causal depthwise FIR (cross-correlation; last tap = lag 0), zero history, fp32.
    ``x`` (B, C, T), ``w`` (C, 1, K)."""
    K = w.shape[-1]
    y = F.conv1d(F.pad(x.float(), (K - 1, 0)), w.float(),
                 None if bias is None else bias.float(), groups=x.shape[1])
    return y


class HyenaFilter(nn.Module):
    """Featurizer FIR + de-interleave + gated inner causal operator (``blocks.N.filter``).

    Input: projection output ``z`` (B, T, 3D). Output ``q * y`` (B, T, D).
    """

    def __init__(self, cfg: StripedHyenaConfig, kind: str) -> None:
        super().__init__()
        D = cfg.hidden_size
        self.kind, self.dim = kind, D
        self.interleave = bool(cfg.interleave)
        self.flip = bool(cfg.hyena_flip_x1x2)
        if cfg.column_split_hyena:
            raise NotImplementedError("column_split_hyena: True is not used by Evo 2 and not supported")
        meta = _building_on_meta()
        randn = torch.empty if meta else torch.randn  # on meta: the shapes only (see _building_on_meta)
        self.short_filter_weight = nn.Parameter(randn(3 * D, 1, cfg.short_filter_length))
        self.short_filter_bias = nn.Parameter(torch.zeros(3 * D)) if cfg.short_filter_bias else None
        if kind == "hcs":
            self.groups = int(cfg.hcs_filter_groups)
            self.h = nn.Parameter(randn(self.groups, 1, cfg.hcs_filter_length))
        elif kind == "hcm":
            self.groups = int(cfg.hcm_filter_groups)
            self.h = nn.Parameter(randn(self.groups, 1, cfg.hcm_filter_length))
            self.D = nn.Parameter(torch.zeros(D))  # noqa: N815 (official key name)
        elif kind == "hcl":
            S = cfg.state_size
            self.log_poles = nn.Parameter(torch.empty(D, S, 1) if meta else -torch.rand(D, S, 1) - 0.01)
            self.residues = nn.Parameter(randn(D, S))
            self.D = nn.Parameter(torch.zeros(D))
        else:
            raise ValueError(kind)
        if kind in ("hcs", "hcm") and D % self.groups:
            raise ValueError(f"{kind}_filter_groups={self.groups} must divide hidden_size={D}")
        self._kernel_cache: tuple[tuple, Tensor] | None = None

    # -- history each mode needs (rows before ``start`` recomputed from the block input)
    @property
    def halo(self) -> int:
        kf = self.short_filter_weight.shape[-1] - 1
        if self.kind == "hcl":
            return kf
        return kf + self.h.shape[-1] - 1

    def explicit_kernel(self) -> Tensor:
        """hcs/hcm filter per channel (D, K), fp32 (group rows repeated)."""
        return self.h[:, 0, :].float().repeat_interleave(self.dim // self.groups, dim=0)

    def modal_kernel(self, length: int) -> Tensor:
        """hcl kernel ``h_i(tau) = sum_n R[i,n] exp(lambda[i,n] tau)``, (D, length), fp32."""
        # h(tau) does not depend on the length: keep the longest kernel and slice it
        key = (self.log_poles.device, self.log_poles._version, self.residues._version,
               self.log_poles.data_ptr(), self.residues.data_ptr())
        use_cache = not torch.is_grad_enabled()
        hit = self._kernel_cache
        if use_cache and hit is not None and hit[0] == key and hit[1].shape[-1] >= length:
            return hit[1][:, :length]
        t = torch.arange(length, device=self.log_poles.device, dtype=torch.float32)
        lp, res = self.log_poles.float(), self.residues.float()
        chunk = max(1, (1 << 24) // max(1, lp.shape[1] * length))
        parts = [(res[i:i + chunk, :, None] * torch.exp(lp[i:i + chunk] * t)).sum(1)
                 for i in range(0, self.dim, chunk)]
        kernel = torch.cat(parts, 0)
        self._kernel_cache = (key, kernel) if use_cache else None
        return kernel

    def _split(self, zh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.interleave:
            q, k, v = zh[:, 0::3], zh[:, 1::3], zh[:, 2::3]
        else:
            q, k, v = zh.split(self.dim, dim=1)
        if self.flip:
            q, k = k, q
        return q, k, v

    def forward(self, z: Tensor, cache: LayerCache | None = None) -> Tensor:
        dtype = z.dtype
        zh = _depthwise_fir(z.transpose(1, 2), self.short_filter_weight, self.short_filter_bias)
        if cache is not None and cache.mode == "suffix":
            return self._forward_suffix(zh, cache, dtype)
        zh = zh.to(dtype)
        q, k, v = self._split(zh)
        s = k * v
        T = s.shape[-1]
        if self.kind == "hcs":
            y = _depthwise_fir(s, self.h.repeat_interleave(self.dim // self.groups, dim=0))
        elif self.kind == "hcm":
            sf = s.float()
            y = fft_causal_conv(sf, self.explicit_kernel()) + self.D.float()[:, None] * sf
        else:
            if cache is not None and cache.mode == "record":
                cache.store["s"] = s.detach()
            y = fft_causal_conv(s.float(), self.modal_kernel(T)).to(dtype) + self.D[:, None] * s
        return (q * y.to(dtype)).transpose(1, 2)

    def _forward_suffix(self, zh: Tensor, cache: LayerCache, dtype: torch.dtype) -> Tensor:
        """``zh`` holds rows ``r0..`` (``r0 = max(0, start - halo)``); returns rows ``start..``."""
        start, T = cache.start, zh.shape[-1]
        r0 = max(0, start - self.halo)
        off = start - r0
        q, k, v = self._split(zh.to(dtype))
        s = k * v
        if self.kind == "hcs":
            y = _depthwise_fir(s, self.h.repeat_interleave(self.dim // self.groups, dim=0))[..., off:]
        elif self.kind == "hcm":
            sf = s.float()
            y = (fft_causal_conv(sf, self.explicit_kernel()) + self.D.float()[:, None] * sf)[..., off:]
        else:
            s = s[..., off:]
            n = T - off
            total = start + n
            # modal_kernel(total)[:n] == modal_kernel(n); reusing the prefill's length keeps its cache warm
            y = fft_causal_conv(s.float(), self.modal_kernel(total)).to(dtype) + self.D[:, None] * s
            if start > 0:
                y = y + self._prefix_contribution(cache, start, total).to(dtype)
        return (q[..., off:] * y.to(dtype)).transpose(1, 2)

    def _prefix_contribution(self, cache: LayerCache, start: int, total: int) -> Tensor:
        """Long-filter response at rows ``start..total-1`` to the reference rows ``< start``."""
        key = ("hcl_prefix", start, total)
        hit = cache.store.get(key)
        if hit is not None:
            return hit
        s_ref = cache.store["s"][..., :start].float()  # (1, D, start)
        h = self.modal_kernel(total)
        n = fft_size(start + total)
        y = torch.fft.irfft(torch.fft.rfft(s_ref, n=n) * torch.fft.rfft(h, n=n), n=n)
        out = y[..., start:total]
        cache.store[key] = out
        return out


def _building_on_meta() -> bool:
    """True inside ``with torch.device("meta")`` (:func:`build_meta`). Arithmetic on meta tensors
    runs torch's Python decompositions, whose first use imports torch._dynamo (seconds of start-up
    per process), so meta construction skips the init values the checkpoint replaces anyway."""
    return torch.empty(0).is_meta


class RotaryEmbedding(nn.Module):
    """GPT-NeoX half-split rotary embedding with optional position interpolation."""

    def __init__(self, head_dim: int, base: float, scaling: float) -> None:
        super().__init__()
        inv = torch.empty(len(range(0, head_dim, 2))) if _building_on_meta() else \
            1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv, persistent=True)
        self.scaling = float(scaling)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Rotate ``x`` (B, T, H, d_h) at absolute positions ``offset..offset+T-1``."""
        T = x.shape[1]
        inv = self.inv_freq
        if inv.dtype != torch.float32:
            d = x.shape[-1]
            inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d))
        pos = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32) / self.scaling
        theta = torch.outer(pos, inv.to(x.device))
        cos = theta.cos().to(x.dtype)[None, :, None, :]
        sin = theta.sin().to(x.dtype)[None, :, None, :]
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def suffix_attention(q: Tensor, k: Tensor, v: Tensor, start: int) -> Tensor:
    """Causal attention of the last ``T`` query rows over ``start + T`` keys (bottom-right
    aligned causal mask). q (B, H, T, d), k/v (B, H, start+T, d).

    CUDA: SDPA with a lower-right causal bias (fused kernels). CPU: the flash kernel on the
    prefix keys (dense) and on the suffix keys (causal), merged with their log-sum-exps, so
    no (T, start+T) mask is materialised. Falls back to an explicit boolean mask."""
    T = q.shape[2]
    if q.device.type == "cuda":
        from torch.nn.attention.bias import causal_lower_right

        return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(T, start + T))
    flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if flash is not None and start > 0 and not torch.is_grad_enabled():
        try:
            o1, l1 = flash(q, k[:, :, :start], v[:, :, :start])[:2]
            o2, l2 = flash(q, k[:, :, start:], v[:, :, start:], is_causal=True)[:2]
            m = torch.maximum(l1, l2)
            w1, w2 = torch.exp(l1 - m)[..., None], torch.exp(l2 - m)[..., None]
            return ((o1.float() * w1 + o2.float() * w2) / (w1 + w2)).to(q.dtype)
        except (RuntimeError, TypeError):  # unsupported dtype/shape for the fused kernel
            pass
    allowed = torch.ones(T, start + T, dtype=torch.bool, device=q.device).tril(diagonal=start)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


class MHA(nn.Module):
    """Causal multi-head attention (``blocks.N.inner_mha_cls``); output after ``out_proj``."""

    def __init__(self, cfg: StripedHyenaConfig) -> None:
        super().__init__()
        D, H = cfg.hidden_size, cfg.num_attention_heads
        if cfg.proj_groups != 1:
            raise NotImplementedError("proj_groups != 1 (grouped-query attention) is not used by Evo 2")
        self.H, self.dh = H, D // H
        self.Wqkv = nn.Linear(D, 3 * D, bias=bool(cfg.qkv_proj_bias))
        self.out_proj = nn.Linear(D, D, bias=bool(cfg.mha_out_proj_bias))
        scaling = cfg.rotary_emb_scaling_factor if cfg.use_interpolated_rotary_pos_emb else 1
        self.rotary_emb = RotaryEmbedding(self.dh, float(cfg.rotary_emb_base), float(scaling))

    def forward(self, a: Tensor, cache: LayerCache | None = None) -> Tensor:
        B, T, D = a.shape
        qkv = self.Wqkv(a).view(B, T, 3, self.H, self.dh)
        offset = cache.start if cache is not None and cache.mode == "suffix" else 0
        q = self.rotary_emb(qkv[:, :, 0], offset).transpose(1, 2)
        k = self.rotary_emb(qkv[:, :, 1], offset).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        if cache is None or cache.mode == "record":
            if cache is not None:
                cache.store["k"], cache.store["v"] = k.detach(), v.detach()
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            start = cache.start
            kr, vr = cache.store["k"][:, :, :start], cache.store["v"][:, :, :start]
            k = torch.cat((kr.expand(B, -1, -1, -1).to(k.dtype), k), dim=2)
            v = torch.cat((vr.expand(B, -1, -1, -1).to(v.dtype), v), dim=2)
            ctx = suffix_attention(q, k, v, start)
        return self.out_proj(ctx.transpose(1, 2).reshape(B, T, D))


class HyenaBlock(nn.Module):
    """``ParallelGatedConvBlock``: pre-norm -> projections -> filter -> out_filter_dense, + MLP."""

    def __init__(self, cfg: StripedHyenaConfig, idx: int, kind: str) -> None:
        super().__init__()
        D = cfg.hidden_size
        self.kind = kind
        self.pre_norm = RMSNorm(D, cfg.eps)
        self.post_norm = RMSNorm(D, cfg.eps)
        self.projections = nn.Linear(D, 3 * D, bias=bool(cfg.qkv_proj_bias))
        self.filter = HyenaFilter(cfg, kind)
        self.out_filter_dense = nn.Linear(D, D, bias=bool(cfg.hyena_out_proj_bias))
        self.mlp = _make_mlp(cfg, idx)

    def forward(self, x: Tensor, cache: LayerCache | None = None) -> Tensor:
        if cache is not None and cache.mode == "record":
            cache.store["x"] = x.detach()
        xin = x
        if cache is not None and cache.mode == "suffix":
            r0 = max(0, cache.start - self.filter.halo)
            hist = cache.store["x"][:, r0:cache.start].to(x.dtype)
            xin = torch.cat((hist.expand(x.shape[0], -1, -1), x), dim=1)
        o = self.filter(self.projections(self.pre_norm(xin)), cache)
        x = x + self.out_filter_dense(o)
        return x + self.mlp(self.post_norm(x))


class AttentionBlock(nn.Module):
    """``AttentionBlock``: pre-norm -> inner_mha_cls, + MLP."""

    def __init__(self, cfg: StripedHyenaConfig, idx: int) -> None:
        super().__init__()
        D = cfg.hidden_size
        self.kind = "attn"
        self.pre_norm = RMSNorm(D, cfg.eps)
        self.post_norm = RMSNorm(D, cfg.eps)
        self.inner_mha_cls = MHA(cfg)
        self.mlp = _make_mlp(cfg, idx)

    def forward(self, x: Tensor, cache: LayerCache | None = None) -> Tensor:
        x = x + self.inner_mha_cls(self.pre_norm(x), cache)
        return x + self.mlp(self.post_norm(x))


def _make_mlp(cfg: StripedHyenaConfig, idx: int) -> GatedMLP:
    identity = bool(cfg.evo2_style_activations) and idx > 0
    return GatedMLP(cfg.hidden_size, int(cfg.inner_mlp_size), cfg.mlp_activation, identity)


class StripedHyena(nn.Module):
    """The full model: ``embedding_layer`` -> ``blocks`` -> ``norm`` -> tied unembedding."""

    def __init__(self, config: StripedHyenaConfig | dict) -> None:
        super().__init__()
        cfg = config if isinstance(config, StripedHyenaConfig) else StripedHyenaConfig(config)
        if not cfg.tie_embeddings:
            raise NotImplementedError("tie_embeddings: False is not supported (Evo 2 ties them)")
        self.config = cfg
        # On the meta device (build_meta) skip the random init (see _building_on_meta).
        meta = _building_on_meta()
        self.embedding_layer = nn.Embedding(cfg.vocab_size, cfg.hidden_size,
                                            _weight=torch.empty(cfg.vocab_size, cfg.hidden_size) if meta else None)
        self.blocks = nn.ModuleList(
            AttentionBlock(cfg, i) if kind == "attn" else HyenaBlock(cfg, i, kind)
            for i, kind in enumerate(cfg.layer_kinds()))
        self.norm = RMSNorm(cfg.hidden_size, cfg.eps)

    def forward(self, input_ids: Tensor, caches: list[LayerCache] | None = None,
                stop_after: int | None = None) -> Tensor | None:
        """Logits (B, T, V). With ``caches`` (one per block), record or use prefix state.

        ``stop_after=i`` runs only blocks ``0..i`` (−1: the embedding alone) and returns
        None: for hooks on those layers, whose outputs do not depend on later blocks."""
        x = self.embedding_layer(input_ids)
        for i, block in enumerate(self.blocks):
            if stop_after is not None and i > stop_after:
                return None
            x = block(x, None if caches is None else caches[i])
        if stop_after is not None and stop_after < len(self.blocks):
            return None
        x = self.norm(x)
        # the tied unembedding runs in fp32 at least: bf16 logits (~30) would be rounded to 0.25
        wdtype = torch.promote_types(x.dtype, torch.float32)
        return F.linear(x.to(wdtype), self.embedding_layer.weight.to(wdtype))

    def cast(self, dtype: torch.dtype) -> "StripedHyena":
        """Cast to ``dtype`` keeping ``log_poles``, ``residues`` and ``inv_freq`` in fp32
        (the official production dtype policy)."""
        self.to(dtype)
        for name, mod in self.named_modules():
            if isinstance(mod, HyenaFilter) and mod.kind == "hcl":
                mod.log_poles.data = mod.log_poles.data.float()
                mod.residues.data = mod.residues.data.float()
            if isinstance(mod, RotaryEmbedding):
                mod.inv_freq = mod.inv_freq.float()
        return self


# --------------------------------------------------------------------------- state dicts

_IGNORED_SUFFIXES = ("_extra_state",)


def permute_wqkv(w: Tensor, num_heads: int, to_runtime: bool = True) -> Tensor:
    """Reorder Wqkv rows between the checkpoint layout (H, {q,k,v}, d_h) and the runtime
    layout ({q,k,v}, H, d_h). Works for weights (3D, D) and biases (3D,)."""
    rows = w.shape[0]
    dh = rows // (3 * num_heads)
    rest = w.shape[1:]
    if to_runtime:
        return w.reshape(num_heads, 3, dh, *rest).transpose(0, 1).reshape(rows, *rest).contiguous()
    return w.reshape(3, num_heads, dh, *rest).transpose(0, 1).reshape(rows, *rest).contiguous()


def load_official_state_dict(model: StripedHyena, state: dict[str, Tensor],
                             source: str = "checkpoint", dtype: torch.dtype | None = None) -> list[str]:
    """Load a state dict with official key names and checkpoint Wqkv layout into ``model``.

    Drops Transformer-Engine ``_extra_state`` entries and a redundant ``unembed.weight``.
    A model built by :func:`build_meta` adopts the tensors (cast to ``dtype`` if given;
    ``log_poles``/``residues``/``inv_freq`` stay fp32).
    Raises ``KeyError`` naming missing/mis-shaped tensors; returns the ignored unknown keys."""
    cfg = model.config
    own = model.state_dict()
    ignored: list[str] = []
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith(_IGNORED_SUFFIXES) or (key == "unembed.weight" and cfg.tie_embeddings):
            continue
        if key not in own:
            ignored.append(key)
            continue
        if not isinstance(value, Tensor):
            raise TypeError(f"{source}: entry {key!r} is not a tensor")
        if cfg.column_split and ".inner_mha_cls.Wqkv." in key:
            value = permute_wqkv(value, cfg.num_attention_heads, to_runtime=True)
        if tuple(value.shape) != tuple(own[key].shape):
            raise KeyError(f"{source}: tensor {key!r} has shape {tuple(value.shape)}, the config "
                           f"expects {tuple(own[key].shape)}; is the config the right one?")
        converted[key] = value
    missing = [k for k in own if k not in converted]
    # inv_freq is a deterministic buffer: fill it from the config when the file lacks it
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing:
        raise KeyError(f"{source}: missing {len(missing)} tensor(s), e.g. {missing[:5]}; "
                       "is this a StripedHyena 2 / Evo 2 checkpoint for this config?")
    if any(t.is_meta for t in own.values()):
        # built on the meta device: adopt the (possibly memory-mapped) tensors, no init, no copy
        for key, target in own.items():
            if key not in converted:  # inv_freq from the formula
                d = 2 * target.shape[0]
                converted[key] = 1.0 / (float(cfg.rotary_emb_base) ** (
                    torch.arange(0, d, 2, dtype=torch.float32) / d))
            elif key.endswith(("log_poles", "residues", "inv_freq")):
                converted[key] = converted[key].float()
            elif dtype is not None and converted[key].is_floating_point():
                converted[key] = converted[key].to(dtype)
        model.load_state_dict(converted, strict=True, assign=True)
        return ignored
    with torch.no_grad():
        for key, value in converted.items():
            target = own[key]
            keep_fp32 = key.endswith(("log_poles", "residues", "inv_freq"))
            target.copy_(value.to(torch.float32 if keep_fp32 and target.dtype == torch.float32
                                  else target.dtype))
    return ignored


def build_meta(config: StripedHyenaConfig | dict) -> StripedHyena:
    """A StripedHyena with no storage (meta device), to be filled by
    ``load_official_state_dict(..., dtype=...)`` without random init or double memory."""
    with torch.device("meta"):
        return StripedHyena(config)


def export_official_state_dict(model: StripedHyena) -> dict[str, Tensor]:
    """The model's tensors under official names, Wqkv rows in checkpoint layout."""
    out = {}
    for key, value in model.state_dict().items():
        if model.config.column_split and ".inner_mha_cls.Wqkv." in key:
            value = permute_wqkv(value, model.config.num_attention_heads, to_runtime=False)
        out[key] = value.detach().contiguous().clone()
    return out


# --------------------------------------------------------------------------- random init

def random_model(config: StripedHyenaConfig | dict | None = None, seed: int = 0) -> StripedHyena:
    """A randomly initialised, trainable StripedHyena (deterministic given ``seed``).

    Stable real poles in (0.13, 0.999), decayed MR filters, small residues, unit norms."""
    cfg = config if isinstance(config, StripedHyenaConfig) else (
        tiny_config() if config is None else StripedHyenaConfig(config))
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = StripedHyena(cfg)
    finally:
        torch.random.set_rng_state(torch_state)
    D = cfg.hidden_size

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen)

    with torch.no_grad():
        model.embedding_layer.weight.copy_(randn(cfg.vocab_size, D) / math.sqrt(D) * 2.0)
        for name, p in model.named_parameters():
            if name.endswith((".weight",)) and p.ndim == 2 and "embedding_layer" not in name:
                p.copy_(randn(*p.shape) / math.sqrt(p.shape[1]))
                if name.endswith(("mlp.l3.weight", "out_filter_dense.weight", "out_proj.weight")):
                    p.mul_(1.0 / math.sqrt(2 * cfg.num_layers))
            elif name.endswith("bias"):
                p.zero_()
        for block in model.blocks:
            if block.kind == "attn":
                continue
            f = block.filter
            f.short_filter_weight.copy_(randn(*f.short_filter_weight.shape) * 0.3)
            f.short_filter_weight[:, 0, -1] += 1.0
            if f.kind == "hcs":
                f.h.copy_(randn(*f.h.shape) * 0.3)
                f.h[:, 0, -1] += 1.0
            elif f.kind == "hcm":
                K = f.h.shape[-1]
                rate = torch.logspace(0, 2, f.groups)[:, None, None]
                tau = torch.arange(K, dtype=torch.float32)
                f.h.copy_(randn(*f.h.shape) * 0.1 * torch.exp(-rate * tau / max(1, K - 1)))
                f.h[:, 0, 0] += 1.0
                f.D.copy_(randn(D) * 0.1)
            else:
                u = torch.rand(f.log_poles.shape, generator=gen)
                f.log_poles.copy_(-torch.exp(math.log(1e-3) + u * (math.log(2.0) - math.log(1e-3))))
                f.residues.copy_(randn(*f.residues.shape) * 0.05)
                f.D.copy_(randn(D) * 0.1)
    return model


def clone_model(model: StripedHyena) -> StripedHyena:
    """A deep copy (same weights, independent parameters)."""
    return copy.deepcopy(model)
