"""Covariance probes on EVEE activation views (DESIGN.md, "Covariance probe").

Input: the EVEE harvest view ``acts [B, 2, 3, K, d]`` (direction fwd/bwd x three
views x K positions x d), reduced per direction to ``diff [B, K, d]`` = variant
minus reference. Which reference view is subtracted is the probe's ``pairing``:

* ``"index"``: ``var_same - ref_same`` (views 0 - 1), the reference at the *same
  sequence index*: EVEE's diff (``utils.unified_diff``), what an ``evee``-recipe
  store's ``diff`` holds, and the default on ``evee``-recipe stores.
* ``"genomic"``: view 0 - view 2, which in a ``genomic``-recipe store is
  ``ref_aligned``, the reference at the *same genomic base* (what that recipe's
  ``diff`` holds; its default). In an ``evee``-recipe store view 2 is
  ``ref_cross`` (the other strand), so this pairing is refused there.

The harvest recipe a store was written with is in its manifest
(:func:`biointerp.store.store_recipe`); :func:`resolve_pairing` checks the
combination and a probe trained on one recipe refuses a store of the other
(:func:`check_recipe`). Both are saved in the probe card.

Input layout (``concat``):

* ``concat=False`` ("per_direction"): one projection pair per direction,
  ``left = proj_left_<dir>(diff)``, ``right = proj_right_<dir>(diff)`` (``d -> h``
  with bias), ``C = sum_dir left^T right / K`` over each direction's real
  positions (padding masked out).
* ``concat=True`` ("unified_diff", EVEE's trainer input): ``x = [diff_fwd,
  diff_bwd]`` concatenated on the feature axis, ``[B, K, 2d]``; one pair
  ``proj_left``, ``proj_right`` (``2d -> h``); ``C = left^T right / K`` over all
  K rows, padding included (EVEE's trainer passes the probe no mask).

Then ``C + eps*I`` (``h x h``), ``S = NS_3(C)``: 3 coupled Newton-Schulz steps on
``C / ||C||_F``, rescaled by ``sqrt(||C||_F)`` (or a true root, ``root=``, below),
``feat_j = sum_lr S_lr A_jl B_jr``
with ``A``, ``B`` the weights of ``head_left``, ``head_right`` (bias-free ``h -> p``),
then ``out`` (``p -> n``). Parameter names match the published EVEE
``probe.safetensors``.

What this computes (the default, ``root="newton_schulz"``, kept as EVEE has it):
``left`` and ``right`` are two *different* projections, so ``C`` is neither
symmetric nor positive semi-definite (at initialisation ``C`` typically has
eigenvalues with negative real part), and Newton-Schulz converges to a square
root only for matrices with spectrum in the right half-plane, after many more
than 3 steps. Three steps are a fixed matrix polynomial of ``C / ||C||_F``: a
learned second-order pooling followed by a smooth, bounded non-linearity, not a
square root (median ``||S^2 - C|| / ||C||`` is of order 1 or more at
initialisation; see ``root_error``). The probe is trained end to end through
that polynomial, which is a legitimate model in its own right.

``root="sym_eigh"`` takes a true square root: ``C`` is symmetrised
(``(C + C^T)/2``), projected onto the PSD cone (eigenvalues clamped at ``eps``)
and rooted through its eigendecomposition. ``root="gram_eigh"`` pools
``C = sum_dir left^T left / K + eps*I`` (symmetric PSD by construction; the right
projections are unused) and roots it the same way. Both back-propagate through
the Lyapunov equation ``S X + X S = G`` (stable: ``s_i + s_j >= 2 sqrt(eps)``),
not through the eigenvector derivative, which diverges at repeated eigenvalues.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

#: EVEE view indices (``pairing="index"``: ``VAR_SAME - REF_SAME``; ``"genomic"``: ``VAR_SAME - view 2``,
#: the genomic recipe's ``ref_aligned``; in the evee recipe view 2 is ``ref_cross``, the other strand).
VAR_SAME, REF_SAME, REF_CROSS = 0, 1, 2
#: how the variant view is paired with a reference view (see the module doc)
PAIRINGS = ("genomic", "index")
#: the pairing each harvest recipe's stored ``diff`` holds (and its default)
RECIPE_PAIRING = {"evee": "index", "genomic": "genomic"}
#: the probe input layouts (``concat`` False / True)
LAYOUTS = {False: "per_direction", True: "unified_diff"}


def check_pairing(pairing: str) -> str:
    """``pairing`` if it is one of :data:`PAIRINGS`, else a ValueError."""
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; use 'index' (var_same - ref_same, the same sequence index, "
                         "EVEE's diff) or 'genomic' (var_same - ref_aligned, the same genomic base; genomic recipe)")
    return pairing


def resolve_pairing(recipe: str | None, pairing: str | None, tensor: str = "acts") -> str:
    """The pairing for an EVEE ``tensor`` (``acts`` or ``diff``) of a store written by ``recipe``.

    ``pairing=None`` gives the recipe's own (:data:`RECIPE_PAIRING`; ``"genomic"``
    when the recipe is unknown, e.g. tensors in memory). ValueError for
    combinations that have no meaning: ``"genomic"`` on an ``evee``-recipe store
    (view 2 is the other strand's reference), or a ``diff`` store asked for the
    pairing it does not hold.
    """
    if recipe is None:
        return check_pairing(pairing or "genomic")
    if recipe not in RECIPE_PAIRING:
        raise ValueError(f"unknown harvest recipe {recipe!r} (known: {', '.join(RECIPE_PAIRING)})")
    own = RECIPE_PAIRING[recipe]
    if pairing is None:
        return own
    check_pairing(pairing)
    if tensor == "diff" and pairing != own:
        raise ValueError(f"a {recipe}-recipe diff store (view=evee_diff) only holds pairing={own!r} diffs; "
                         f"pairing={pairing!r} needs the acts view (harvest with --view evee)")
    if recipe == "evee" and pairing == "genomic":
        raise ValueError("pairing='genomic' needs a genomic-recipe store: in an evee-recipe store view 2 is "
                         "ref_cross, the other strand's reference, not the same genomic base. Use "
                         "pairing='index' (var_same - ref_same, EVEE's diff) or harvest with --recipe genomic")
    return pairing


def check_recipe(probe_recipe: str | None, store_recipe: str | None) -> None:
    """ValueError when a probe trained on one harvest recipe is given a store of another."""
    if probe_recipe and store_recipe and probe_recipe != store_recipe:
        raise ValueError(f"this probe was trained on activations of the {probe_recipe!r} harvest recipe, but the "
                         f"store was written by the {store_recipe!r} recipe (other positions and views); harvest "
                         f"again with --recipe {probe_recipe}, or train a probe on this store")


def newton_schulz_sqrt(C: torch.Tensor, n_iter: int = 3) -> torch.Tensor:
    """``n_iter`` coupled Newton-Schulz steps on ``C [..., h, h]`` (EVEE's "matrix square root").

    Runs on ``C / ||C||_F`` and rescales the result by ``sqrt(||C||_F)``.
    ``n_iter=0`` returns ``C`` unchanged. It approaches a square root only for
    symmetric ``C`` with spectrum in the right half-plane and enough steps; with
    the probe's non-symmetric ``C`` and 3 steps it is a fixed matrix polynomial,
    not a root (module doc; :func:`root_error` measures ``||S^2 - C|| / ||C||``).
    """
    if n_iter <= 0:
        return C
    h = C.shape[-1]
    norm = torch.linalg.matrix_norm(C, ord="fro", keepdim=True).clamp_min(1e-12)
    Y = C / norm
    eye = torch.eye(h, dtype=C.dtype, device=C.device).expand_as(C)
    Z = eye
    for _ in range(n_iter):
        T = 0.5 * (3.0 * eye - Z @ Y)
        Y = Y @ T
        Z = T @ Z
    return Y * norm.sqrt()


#: how the covariance is rooted (see the module doc); the first is EVEE's and the default
ROOTS = ("newton_schulz", "sym_eigh", "gram_eigh")


class _PSDSqrt(torch.autograd.Function):
    """Principal square root of symmetric ``C`` (eigenvalues clamped at ``floor``); Lyapunov backward."""

    @staticmethod
    def forward(ctx, C: torch.Tensor, floor: float) -> torch.Tensor:
        lam, V = torch.linalg.eigh(C.double())
        s = lam.clamp_min(floor).sqrt()
        ctx.save_for_backward(s, V)
        return ((V * s.unsqueeze(-2)) @ V.transpose(-1, -2)).to(C.dtype)

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        s, V = ctx.saved_tensors
        Vt = V.transpose(-1, -2)
        Gs = Vt @ (0.5 * (G + G.transpose(-1, -2))).double() @ V
        X = Gs / (s.unsqueeze(-1) + s.unsqueeze(-2))
        return (V @ X @ Vt).to(G.dtype), None


def psd_sqrt(C: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Square root of the symmetric part of ``C [..., h, h]`` projected onto the PSD cone
    (eigenvalues below ``floor`` raised to it): ``S`` symmetric PSD with ``S @ S`` = that matrix."""
    return _PSDSqrt.apply(0.5 * (C + C.transpose(-1, -2)), float(floor))


def root_error(C: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """``||S @ S - C||_F / ||C||_F`` per matrix: 0 for a true square root."""
    num = torch.linalg.matrix_norm(S @ S - C, ord="fro")
    return num / torch.linalg.matrix_norm(C, ord="fro").clamp_min(1e-12)


def check_root(root: str) -> str:
    """``root`` if it is one of :data:`ROOTS`, else a ValueError."""
    if root not in ROOTS:
        raise ValueError(f"unknown root {root!r}; use one of {', '.join(ROOTS)}")
    return root


def evee_diffs(acts: torch.Tensor, pairing: str = "genomic") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-direction variant-minus-reference diffs ``(diff_fwd, diff_bwd)``, each ``[B, K, d]`` float32.

    Parameters
    ----------
    acts
        The EVEE view ``acts [B,2,3,K,d]``; a stored ``diff [B,2,K,d]`` (``view=evee_diff``,
        taken as is); or a pooled pair ``[B,2,d]``
        (alt, ref embeddings; both directions get ``alt - ref`` with K=1).
    pairing
        For ``acts``: ``"index"`` takes ``var_same - ref_same`` (views 0 - 1), ``"genomic"``
        views 0 - 2. A stored ``diff`` is taken as is (which pairing it holds is the store's
        recipe, checked by :func:`resolve_pairing`); a pooled pair refuses ``"index"``.
    """
    check_pairing(pairing)
    a = acts.float()
    if a.dim() == 5 and a.shape[1] == 2 and a.shape[2] == 3:
        ref = REF_CROSS if pairing == "genomic" else REF_SAME
        return a[:, 0, VAR_SAME] - a[:, 0, ref], a[:, 1, VAR_SAME] - a[:, 1, ref]
    if a.dim() == 4 and a.shape[1] == 2:
        return a[:, 0], a[:, 1]
    if a.dim() == 3 and a.shape[1] == 2:
        if pairing == "index":
            raise ValueError("pairing='index' applies to the EVEE view acts [N,2,3,K,d] only; a pooled (alt, ref) "
                             "pair has no per-position views (use pairing='genomic')")
        d = (a[:, 0] - a[:, 1]).unsqueeze(1)
        return d, d
    raise ValueError(f"expected EVEE activations [B,2,3,K,d], diffs [B,2,K,d] or a pooled (alt, ref) pair "
                     f"[B,2,d]; got {tuple(acts.shape)}")


def _outer_mean(left: torch.Tensor, right: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``left^T right / K`` per batch item; padded positions (mask False) are left out."""
    if mask is None:
        return left.transpose(1, 2) @ right / left.shape[1]
    m = mask.to(left.dtype).unsqueeze(-1)
    k = m.sum(1, keepdim=True).clamp_min(1.0)
    return (left * m).transpose(1, 2) @ (right * m) / k


class BilinearHead(nn.Module):
    """Readout ``feat_j = sum_lr S_lr A_jl B_jr`` then ``out`` (p -> n_out)."""

    def __init__(self, h: int, p: int, n_out: int):
        super().__init__()
        self.head_left = nn.Linear(h, p, bias=False)
        self.head_right = nn.Linear(h, p, bias=False)
        self.out = nn.Linear(p, n_out)

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        feat = torch.einsum("blr,jl,jr->bj", S, self.head_left.weight, self.head_right.weight)
        return self.out(feat)


class CovarianceBackbone(nn.Module):
    """Projections + covariance pooling + matrix square root -> ``S [B, h, h]``.

    ``concat=False``: one projection pair per direction (``proj_{left,right}_{fwd,bwd}``).
    ``concat=True``: EVEE's unified diff, both directions concatenated to ``[K, 2d]``
    before one pair (``proj_left``, ``proj_right``), all K rows (module doc).
    ``pairing``: which reference view ``acts`` inputs subtract (see :func:`evee_diffs`).
    """

    def __init__(self, d: int, h: int = 64, eps: float = 1e-3, n_sqrt_iter: int = 3, concat: bool = False,
                 input_scale: float = 1.0, pairing: str = "genomic", root: str = "newton_schulz"):
        super().__init__()
        self.d, self.h, self.eps, self.n_sqrt_iter, self.concat = d, h, eps, n_sqrt_iter, concat
        self.pairing = check_pairing(pairing)
        #: ``newton_schulz`` (EVEE, default), ``sym_eigh`` or ``gram_eigh`` (true roots; module doc)
        self.root = check_root(root)
        #: diffs are multiplied by this before projection (1.0 = EVEE; set from the training
        #: data's RMS by ``train_probe``; stored in the card, not in the tensors)
        self.input_scale = float(input_scale)
        # identity kept as a buffer: EVEE state dicts carry it as ``_eye``
        self.register_buffer("_eye", torch.eye(h))
        if concat:
            self.proj_left = nn.Linear(2 * d, h)
            self.proj_right = nn.Linear(2 * d, h)
        else:
            self.proj_left_fwd = nn.Linear(d, h)
            self.proj_right_fwd = nn.Linear(d, h)
            self.proj_left_bwd = nn.Linear(d, h)
            self.proj_right_bwd = nn.Linear(d, h)

    def covariance(self, acts: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``C = sum_dir left^T right / K + eps*I``; ``mask [B,2,K]`` bool marks real positions."""
        fwd, bwd = evee_diffs(acts, self.pairing)
        if self.input_scale != 1.0:
            fwd, bwd = fwd * self.input_scale, bwd * self.input_scale
        gram = self.root == "gram_eigh"
        if self.concat:  # EVEE's unified diff [B, K, 2d]; EVEE's trainer passes no mask
            x = torch.cat([fwd, bwd], dim=-1)
            lx = self.proj_left(x)
            C = _outer_mean(lx, lx if gram else self.proj_right(x), None)
        else:
            mf = None if mask is None else mask[:, 0]
            mb = None if mask is None else mask[:, 1]
            lf, lb = self.proj_left_fwd(fwd), self.proj_left_bwd(bwd)
            C = _outer_mean(lf, lf if gram else self.proj_right_fwd(fwd), mf)
            C = C + _outer_mean(lb, lb if gram else self.proj_right_bwd(bwd), mb)
        return C + self.eps * self._eye.to(C.dtype)

    def forward(self, acts: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        C = self.covariance(acts, mask)
        if self.root == "newton_schulz":
            return newton_schulz_sqrt(C, self.n_sqrt_iter)
        return psd_sqrt(C, self.eps)

    def _root_hparams(self) -> dict:
        return {} if self.root == "newton_schulz" else {"root": self.root}


class CovarianceProbe(CovarianceBackbone):
    """Single-head covariance probe with the EVEE parameter names.

    ``forward(acts [B,2,3,K,d], mask=None) -> logits [B, n_out]``.
    """

    kind = "covariance"

    def __init__(self, d: int, h: int = 64, p: int = 128, n_out: int = 2, eps: float = 1e-3,
                 n_sqrt_iter: int = 3, concat: bool = False, input_scale: float = 1.0, pairing: str = "genomic",
                 root: str = "newton_schulz"):
        super().__init__(d, h, eps, n_sqrt_iter, concat, input_scale, pairing, root)
        self.p, self.n_out = p, n_out
        self.head_left = nn.Linear(h, p, bias=False)
        self.head_right = nn.Linear(h, p, bias=False)
        self.out = nn.Linear(p, n_out)

    def forward(self, acts: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        S = super().forward(acts, mask)
        feat = torch.einsum("blr,jl,jr->bj", S, self.head_left.weight, self.head_right.weight)
        return self.out(feat)

    def hparams(self) -> dict:
        return {"d": self.d, "h": self.h, "p": self.p, "n_out": self.n_out, "eps": self.eps,
                "n_sqrt_iter": self.n_sqrt_iter, "concat": self.concat, "input_scale": self.input_scale,
                "pairing": self.pairing, **self._root_hparams()}


class MultiHeadCovarianceProbe(CovarianceBackbone):
    """One shared covariance backbone, one :class:`BilinearHead` per label column.

    ``heads`` maps a head name to its spec: ``{"kind": "binary"}`` (2 outputs),
    ``{"kind": "categorical", "classes": [...]}``, or ``{"kind": "continuous",
    "bins": [edges...]}`` (one output per bin, trained on soft labels; the
    prediction is the expected bin centre). ``forward`` returns ``{name: logits}``.
    State-dict keys follow EVEE's multi-head file: ``head_modules.<name>.head_left.weight``.
    """

    kind = "covariance_multihead"

    def __init__(self, d: int, heads: Mapping[str, Mapping], h: int = 64, p: int = 128, eps: float = 1e-3,
                 n_sqrt_iter: int = 3, concat: bool = False, input_scale: float = 1.0, pairing: str = "genomic",
                 root: str = "newton_schulz"):
        super().__init__(d, h, eps, n_sqrt_iter, concat, input_scale, pairing, root)
        self.p = p
        self.heads = {k: dict(v) for k, v in heads.items()}
        self.head_modules = nn.ModuleDict({name: BilinearHead(h, p, head_outputs(spec))
                                           for name, spec in self.heads.items()})

    def add_head(self, name: str, spec: Mapping) -> None:
        """Add a fresh readout head (for fine-tuning on a new label column)."""
        if name in self.head_modules:
            raise ValueError(f"head {name!r} already exists")
        self.heads[name] = dict(spec)
        ref = next(self.parameters())
        self.head_modules[name] = BilinearHead(self.h, self.p, head_outputs(spec)).to(ref.device, ref.dtype)

    def forward(self, acts: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        S = super().forward(acts, mask)
        return {name: head(S) for name, head in self.head_modules.items()}

    def hparams(self) -> dict:
        return {"d": self.d, "h": self.h, "p": self.p, "eps": self.eps, "n_sqrt_iter": self.n_sqrt_iter,
                "concat": self.concat, "input_scale": self.input_scale, "pairing": self.pairing, "heads": self.heads,
                **self._root_hparams()}


def head_outputs(spec: Mapping) -> int:
    """Number of outputs of a head spec (binary 2, categorical n classes, continuous n bins)."""
    kind = spec.get("kind", "binary")
    if kind == "binary":
        return 2
    if kind == "categorical":
        return len(spec["classes"])
    if kind == "continuous":
        return len(spec["bins"]) - 1
    raise ValueError(f"unknown head kind {kind!r}; use binary, categorical or continuous")


def soft_bin_labels(y: torch.Tensor, edges: torch.Tensor, width: float = 1.0) -> torch.Tensor:
    """Continuous targets ``y [B]`` -> soft labels over bins ``[B, n_bins]``.

    A Gaussian kernel (std = ``width`` bin widths) around ``y`` on the bin centres,
    normalised to sum to 1.
    """
    centres = 0.5 * (edges[1:] + edges[:-1])
    bw = (edges[1:] - edges[:-1]).mean() * width
    logits = -0.5 * ((y[:, None] - centres[None, :]) / bw) ** 2
    return torch.softmax(logits, dim=-1)


def head_prediction(spec: Mapping, logits: torch.Tensor) -> torch.Tensor:
    """Score per variant from head logits: P(class 1) for binary, expected value for
    continuous, argmax class index for categorical."""
    kind = spec.get("kind", "binary")
    if kind == "binary":
        return logits.softmax(-1)[:, 1] if logits.shape[-1] == 2 else torch.sigmoid(logits[:, 0])
    if kind == "continuous":
        edges = torch.as_tensor(spec["bins"], dtype=logits.dtype, device=logits.device)
        centres = 0.5 * (edges[1:] + edges[:-1])
        return logits.softmax(-1) @ centres
    return logits.argmax(-1).to(logits.dtype)


def to_multihead(probe: CovarianceBackbone, name: str = "pathogenicity",
                 spec: Mapping | None = None) -> MultiHeadCovarianceProbe:
    """A single-head :class:`CovarianceProbe` as a multi-head probe (its head named ``name``),
    so new heads can be added on the same backbone; multi-head probes are returned as is."""
    if isinstance(probe, MultiHeadCovarianceProbe):
        return probe
    spec = dict(spec or {"kind": "binary"})
    if head_outputs(spec) != probe.n_out:
        spec = {"kind": "categorical", "classes": list(range(probe.n_out))}
    mh = MultiHeadCovarianceProbe(probe.d, {name: spec}, probe.h, probe.p, probe.eps, probe.n_sqrt_iter,
                                  probe.concat, probe.input_scale, probe.pairing, probe.root)
    sd = {}
    for k, v in probe.state_dict().items():
        if k.split(".")[0] in ("head_left", "head_right", "out"):
            sd[f"head_modules.{name}.{k}"] = v
        else:
            sd[k] = v
    mh.load_state_dict(sd, strict=True)
    mh.input_recipe = getattr(probe, "input_recipe", None)
    return mh.to(next(probe.parameters()).device)
