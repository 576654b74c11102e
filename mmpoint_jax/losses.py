"""Contrastive losses of MM-Point and CrossPoint, on embeddings only (DESIGN.md section 1).

* `nt_xent(a, b, tau)`: SimCLR / NT-Xent as CrossPoint uses it (lightly's NTXentLoss): rows
  L2-normalised (eps 1e-12), cosine similarity / tau, each of the 2B anchors scored against the
  other 2B - 1 rows (its positive and 2B - 2 negatives), cross-entropy averaged over 2B anchors.
* `info_nce(anchors, candidates, tau)`: one direction; anchor i against the B candidate rows,
  positive = row i; cosine similarity / tau; mean over anchors.
* `intra_loss`: NT-Xent between h_0 of the two augmented clouds.
* `inter_view_losses` / `inter_plus_loss`: per view j, L_j = info_nce(h_j(P) -> k_j(I_j)) +
  info_nce(k_j(I_j) -> h_j(P)) (mmpoint), or NT-Xent(h(P), k(I)) (crosspoint, `inter_kind`).
* `total_loss(outputs, loss_cfg) -> (loss, metrics)`: w_intra * intra + w_inter * inter, where
  inter = sum_j L_j ('sum') or its mean over views ('mean').

Loss config (`default_loss_config(mode)`):
  tau                 temperature (0.1, the references).
  w_intra, w_inter    weights of the two terms (1.0, 1.0).
  view_normalisation  'sum' (DESIGN.md's L_inter_plus) or 'mean' over the m views.
  inter_kind          'info_nce' (mmpoint: symmetric InfoNCE per view) or 'nt_xent' (crosspoint).

Metrics (scalars): `loss/intra`, `loss/inter` (after view normalisation), `loss/total`, and per view
j = 1..m `loss/inter_view{j}`: with info_nce, the MEAN of the two directional InfoNCE losses of
view j (= L_j / 2), in nats, over the GLOBAL batch of B candidates; so `log(B) - loss/inter_view{j}`
is a lower bound on the mutual information I(h_j(P); k_j(I_j)) (the mean of two InfoNCE bounds),
also reported as `mi_bound/view{j}`. With nt_xent, `loss/inter_view1` is the NT-Xent value itself
and no MI bound is reported (its 2B - 1 candidates mix both modalities: log(B) - it bounds nothing).

Global negatives on many devices: every function takes `axis_name`. Called inside `shard_map`
(or pmap) over that axis with local rows, each device scores its own anchors against the
all-gathered candidates (memory O(B_local x B_global)) and the per-row losses are psum-ed, so the
value and gradients equal the single-device loss on the global batch. The pretraining loop calls
`sharded_total_loss(outputs, loss_cfg, mesh)` inside its `jax.jit`: it wraps `total_loss` in
`jax.shard_map` over `mesh`'s 'data' axis with the embeddings sharded P('data') and returns
replicated (loss, metrics). Only embeddings cross devices, never images or clouds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

NORMALIZE_EPS = 1e-12
INTER_KINDS = ("info_nce", "nt_xent")
VIEW_NORMALISATIONS = ("sum", "mean")
EMBEDDING_KEYS = ("intra1", "intra2", "point_view_embeddings", "image_view_embeddings")


def default_loss_config(mode: str = "mmpoint") -> ml_collections.ConfigDict:
    """The `loss` config section; `mode` as in the model config picks `inter_kind`."""
    return ml_collections.ConfigDict(
        {
            "tau": 0.1,
            "w_intra": 1.0,
            "w_inter": 1.0,
            "view_normalisation": "sum",
            "inter_kind": "nt_xent" if mode == "crosspoint" else "info_nce",
        }
    )


def l2_normalize(x: jax.Array, eps: float = NORMALIZE_EPS) -> jax.Array:
    """x / max(|x|, eps) over the last axis (torch.nn.functional.normalize), at least float32."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bf16 -> f32; f64 (x64 tests) stays
    # sqrt(max(|x|^2, eps^2)) == max(|x|, eps), with a finite gradient at x = 0 (sqrt's is not)
    norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps * eps))
    return x / norm


def _global_rows(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
    """All devices' rows [B_global, d] and the global index of this device's first row."""
    if axis_name is None:
        return x, jnp.zeros((), jnp.int32)
    gathered = jax.lax.all_gather(x, axis_name, tiled=True)
    return gathered, jax.lax.axis_index(axis_name) * x.shape[0]


def _sum_over_devices(x: jax.Array, axis_name: str | None) -> jax.Array:
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def _row_losses(anchors, candidates, positive_cols, tau, excluded_cols=None):
    """Cross-entropy of each anchor row over the candidates. anchors [R, d], candidates [M, d]."""
    logits = jnp.matmul(anchors, candidates.T, precision=jax.lax.Precision.HIGHEST) / tau  # [R, M]
    if excluded_cols is not None:
        cols = jnp.arange(candidates.shape[0])
        logits = jnp.where(cols[None, :] == excluded_cols[:, None], -jnp.inf, logits)
    positive = jnp.take_along_axis(logits, positive_cols[:, None], axis=1)[:, 0]  # [R]
    return jax.nn.logsumexp(logits, axis=1) - positive


def nt_xent(a: jax.Array, b: jax.Array, tau: float, axis_name: str | None = None) -> jax.Array:
    """NT-Xent of row pairs (a_i, b_i). a, b [B, d] (this device's rows under `axis_name`)."""
    za = l2_normalize(a)
    zb = l2_normalize(b)
    all_a, offset = _global_rows(za, axis_name)  # [Bg, d]
    all_b, _ = _global_rows(zb, axis_name)
    global_batch = all_a.shape[0]
    own = offset + jnp.arange(za.shape[0])  # global row of each local anchor
    anchors = jnp.concatenate([za, zb])  # [2B, d]
    candidates = jnp.concatenate([all_a, all_b])  # [2Bg, d]
    self_cols = jnp.concatenate([own, global_batch + own])
    positive_cols = jnp.concatenate([global_batch + own, own])
    rows = _row_losses(anchors, candidates, positive_cols, tau, excluded_cols=self_cols)
    return _sum_over_devices(jnp.sum(rows), axis_name) / (2 * global_batch)


def info_nce(
    anchors: jax.Array, candidates: jax.Array, tau: float, axis_name: str | None = None
) -> jax.Array:
    """InfoNCE with anchor i's positive = candidate i, negatives = the other B - 1 candidates."""
    za = l2_normalize(anchors)
    all_c, offset = _global_rows(l2_normalize(candidates), axis_name)  # [Bg, d]
    rows = _row_losses(za, all_c, offset + jnp.arange(za.shape[0]), tau)
    return _sum_over_devices(jnp.sum(rows), axis_name) / all_c.shape[0]


def intra_loss(outputs: Mapping[str, Any], tau: float, axis_name: str | None = None) -> jax.Array:
    """3D-3D term: NT-Xent between h_0 of the two augmented clouds."""
    return nt_xent(outputs["intra1"], outputs["intra2"], tau, axis_name)


def inter_view_losses(
    outputs: Mapping[str, Any], tau: float, kind: str = "info_nce", axis_name: str | None = None
) -> tuple[jax.Array, ...]:
    """L_j per view: symmetric InfoNCE (sum of both directions) or NT-Xent (crosspoint)."""
    if kind not in INTER_KINDS:
        raise ValueError(f"loss.inter_kind must be one of {INTER_KINDS}, got {kind!r}")
    pairs = zip(outputs["point_view_embeddings"], outputs["image_view_embeddings"], strict=True)
    if kind == "nt_xent":
        return tuple(nt_xent(p, i, tau, axis_name) for p, i in pairs)
    return tuple(info_nce(p, i, tau, axis_name) + info_nce(i, p, tau, axis_name) for p, i in pairs)


def inter_plus_loss(
    outputs: Mapping[str, Any], tau: float, kind: str = "info_nce", axis_name: str | None = None
) -> jax.Array:
    """L_inter_plus = sum over views of L_j (DESIGN.md section 1)."""
    return sum(inter_view_losses(outputs, tau, kind, axis_name))


def total_loss(
    outputs: Mapping[str, Any], loss_cfg: Any, axis_name: str | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(w_intra * intra + w_inter * inter, metrics); see the module docstring for the fields."""
    kind, normalisation = loss_cfg["inter_kind"], loss_cfg["view_normalisation"]
    if normalisation not in VIEW_NORMALISATIONS:
        raise ValueError(
            f"loss.view_normalisation must be one of {VIEW_NORMALISATIONS}, got {normalisation!r}"
        )
    tau = float(loss_cfg["tau"])
    intra = intra_loss(outputs, tau, axis_name)
    per_view = inter_view_losses(outputs, tau, kind, axis_name)
    inter = sum(per_view) / (len(per_view) if normalisation == "mean" else 1)
    total = float(loss_cfg["w_intra"]) * intra + float(loss_cfg["w_inter"]) * inter
    metrics = {"loss/intra": intra, "loss/inter": inter, "loss/total": total}
    global_batch = outputs["intra1"].shape[0] * (
        1 if axis_name is None else jax.lax.axis_size(axis_name)
    )
    for j, view_loss in enumerate(per_view, start=1):
        if kind == "info_nce":
            view_loss = view_loss / 2  # mean of the two directions: log(B) - it bounds the MI
            metrics[f"mi_bound/view{j}"] = math.log(global_batch) - view_loss
        metrics[f"loss/inter_view{j}"] = view_loss
    return total, metrics


def _shard_rows(x: jax.Array, mesh: Mesh, spec: PartitionSpec) -> jax.Array:
    """Lays x out as `spec` on `mesh`: shard_map on an Explicit-axis mesh (jax.make_mesh's default)
    requires its inputs to carry that sharding already; on an Auto mesh it is only a hint."""
    sharding = NamedSharding(mesh, spec)
    axis_types = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))
    if any(axis_types[name] == AxisType.Explicit for name in spec if name is not None):
        return jax.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def sharded_total_loss(
    outputs: Mapping[str, Any], loss_cfg: Any, mesh: Mesh, axis_name: str = "data"
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`total_loss` with global negatives, for use inside `jax.jit` on `mesh`.

    Embeddings are taken sharded along their batch axis over `axis_name` (P('data')); each
    device computes its rows against the all-gathered candidates. Returns replicated scalars.
    """
    spec = PartitionSpec(axis_name)
    embeddings = jax.tree.map(
        lambda x: _shard_rows(x, mesh, spec), {k: outputs[k] for k in EMBEDDING_KEYS}
    )
    fn = jax.shard_map(
        lambda e: total_loss(e, loss_cfg, axis_name),
        mesh=mesh,
        in_specs=(jax.tree.map(lambda _: spec, embeddings),),
        out_specs=PartitionSpec(),
    )
    return fn(embeddings)
