"""PyTorch state_dict layouts -> Flax variables, on plain dicts of numpy arrays (no torch needed).

Layouts read (the `layout` recorded in the export's meta):

* `crosspoint_dgcnn`: CrossPoint's `DGCNN` state_dict: `conv{1..4}.0.weight` [Cout, 2C, 1, 1],
  `conv5.0.weight` [E, 512, 1], batch norms `bn{1..5}.*` (each also present as `conv{i}.1.*`,
  the same tensors: checked equal, read once), `inv_head.{0,1,3}.*` (Linear-BN-ReLU-Linear, with
  biases), optionally the classifier `linear1..3`, `bn6`, `bn7`.
* `mmpoint_dgcnn`: the released MM-Point DGCNN, the same trunk with heads `inv_head` (-> 512)
  and `inv_head1` (-> 128), usually wrapped as {'state_dict': {...}} with DataParallel's `module.`.
* `crosspoint_image`: CrossPoint's image model: `resnet.*` (torchvision ResNet, fc = Identity)
  and `inv_head.{0,1,3}.weight` (no biases).

Layout transposes: Linear [out, in] -> kernel [in, out]; 1x1 convs likewise; Conv2d
[O, I, kh, kw] -> [kh, kw, I, O]; BatchNorm weight/bias/running_mean/running_var ->
scale/bias/mean/var (running_var is PyTorch's unbiased one, which our BatchNorm also keeps).
`num_batches_tracked` is read and dropped on purpose: it only matters for momentum=None.

Every key is accounted for: unknown keys, missing keys and keys whose shape disagrees with the
network the rest of the file describes raise `ConversionError` naming them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from mmpoint_jax.models.build import (
    build_image_encoder,
    build_point_encoder,
    default_image_encoder_config,
    default_point_encoder_config,
)
from mmpoint_jax.models.dgcnn import ClassificationHead
from mmpoint_jax.models.heads import ProjectionHeads
from mmpoint_jax.models.resnet import RESNET_LAYOUTS

LAYOUTS = ("crosspoint_dgcnn", "mmpoint_dgcnn", "crosspoint_image")
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
HEAD_PATTERN = re.compile(r"^(inv_head(\d*))\.")


class ConversionError(ValueError):
    """A state_dict does not match the layout it claims; the message names the keys."""


@dataclasses.dataclass
class ConvertedTower:
    tower: str  # "point" | "image"
    layout: str  # one of LAYOUTS
    variables: dict[str, Any]  # {"params", "batch_stats"} of the encoder
    model_config: ml_collections.ConfigDict
    heads: dict[str, Any]  # {"params", "batch_stats"}: {"point_heads"|"image_heads", "classifier"?}
    heads_config: dict[str, Any]


# ----------------------------------------------------------------------------- input clean-up


def unwrap_state_dict(obj: Any, source: str = "state_dict") -> dict[str, np.ndarray]:
    """{'state_dict': {...}} (or model_state_dict / model) -> the dict, `module.` prefixes gone."""
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    arrays = {k: v for k, v in obj.items() if hasattr(v, "shape")}
    if not arrays:
        raise ConversionError(f"{source}: no tensors found (top-level keys: {sorted(obj)[:10]})")
    prefixed = [k for k in arrays if k.startswith("module.")]
    if prefixed and len(prefixed) != len(arrays):
        raise ConversionError(f"{source}: only some keys carry the DataParallel 'module.' prefix")
    return {k.removeprefix("module."): np.asarray(v) for k, v in arrays.items()}


# ----------------------------------------------------------------------------- mapping machinery


def _linear_kernel(w: np.ndarray) -> np.ndarray:
    return w.reshape(w.shape[0], -1).T  # Linear [out, in] and 1x1 convs [out, in, 1(, 1)]


def _conv2d_kernel(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # [O, I, kh, kw] -> [kh, kw, I, O]


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One PyTorch module -> one Flax module path (tuple of names)."""

    torch_prefix: str
    flax_path: tuple[str, ...]
    kind: str  # "bn" | "linear" | "conv2d"
    bias: bool = False


class _Reader:
    """Reads entries out of a state_dict, remembering every key it consumed."""

    def __init__(self, state: dict[str, np.ndarray], source: str):
        self.state, self.source = state, source
        self.consumed: set[str] = set()
        self.missing: list[str] = []

    def take(self, key: str) -> np.ndarray | None:
        if key not in self.state:
            self.missing.append(key)
            return None
        self.consumed.add(key)
        return np.asarray(self.state[key], dtype=np.float32)

    def read(self, entries: list[_Entry]) -> tuple[dict, dict, dict[tuple[str, ...], str]]:
        """-> (params, batch_stats, {flax leaf path: torch key}) for the entries."""
        params: dict = {}
        stats: dict = {}
        origin: dict[tuple[str, ...], str] = {}

        def put(tree, path, leaf, value, key):
            node = tree
            for name in path:
                node = node.setdefault(name, {})
            node[leaf] = value
            origin[(*path, leaf)] = key

        for e in entries:
            p = e.torch_prefix
            if e.kind == "bn":
                values = {s: self.take(p + s) for s in BN_SUFFIXES}
                if p + "num_batches_tracked" in self.state:
                    self.consumed.add(p + "num_batches_tracked")
                for leaf, s, tree in (
                    ("scale", "weight", params),
                    ("bias", "bias", params),
                    ("mean", "running_mean", stats),
                    ("var", "running_var", stats),
                ):
                    if values[s] is not None:
                        put(tree, e.flax_path, leaf, values[s], p + s)
                continue
            transform = _conv2d_kernel if e.kind == "conv2d" else _linear_kernel
            w = self.take(p + "weight")
            if w is not None:
                put(params, e.flax_path, "kernel", transform(w), p + "weight")
            if e.bias:
                b = self.take(p + "bias")
                if b is not None:
                    put(params, e.flax_path, "bias", b, p + "bias")
        return params, stats, origin

    def check_all_consumed(self, ignored: set[str] = frozenset()) -> None:
        unknown = sorted(set(self.state) - self.consumed - set(ignored))
        problems = []
        if self.missing:
            problems.append(f"missing keys {sorted(self.missing)}")
        if unknown:
            problems.append(f"unknown keys {unknown}")
        if problems:
            raise ConversionError(f"{self.source}: " + "; ".join(problems))


def _check_shapes(
    tree: dict, expected: Any, origin: dict, source: str, where: tuple[str, ...] = ()
) -> None:
    """Compares converted arrays with the Flax model's abstract variables; names torch keys."""
    flat_got = {
        tuple(getattr(k, "key", k) for k in path): v
        for path, v in jax.tree_util.tree_leaves_with_path(tree)
    }
    flat_want = {
        tuple(getattr(k, "key", k) for k in path): v
        for path, v in jax.tree_util.tree_leaves_with_path(expected)
    }
    wrong = []
    for path, want in flat_want.items():
        got = flat_got.get(path)
        key = origin.get(path[1:], "/".join(path))  # origin paths omit the collection name
        if got is None:
            wrong.append(f"{key}: missing (Flax {'/'.join(where + path)} {tuple(want.shape)})")
        elif tuple(got.shape) != tuple(want.shape):
            wrong.append(f"{key}: shape {tuple(got.shape)} -> expected {tuple(want.shape)}")
    extra = sorted("/".join(p) for p in set(flat_got) - set(flat_want))
    if extra:
        wrong.append(f"no place in the network for {extra}")
    if wrong:
        raise ConversionError(f"{source}: mis-shaped or unplaceable tensors: " + "; ".join(wrong))


def _require(state: dict, key: str, source: str) -> np.ndarray:
    if key not in state:
        raise ConversionError(
            f"{source}: key '{key}' not found; is this the right --model? "
            f"(first keys: {sorted(state)[:8]})"
        )
    return state[key]


def _abstract_variables(module, *example_shapes: tuple[int, ...]) -> dict:
    args = [jax.ShapeDtypeStruct(s, np.float32) for s in example_shapes]
    return jax.eval_shape(lambda *a: module.init(jax.random.PRNGKey(0), *a, train=False), *args)


def _split_origin(origin: dict, prefix: tuple[str, ...]) -> dict:
    return {k[len(prefix) :]: v for k, v in origin.items() if k[: len(prefix)] == prefix}


def _assemble(params: dict, stats: dict) -> dict:
    return {"params": params, "batch_stats": stats}


# ----------------------------------------------------------------------------- DGCNN


def _projection_head_entries(
    torch_name: str, flax_path: tuple[str, ...], bias: bool
) -> list[_Entry]:
    return [
        _Entry(f"{torch_name}.0.", (*flax_path, "linear1"), "linear", bias),
        _Entry(f"{torch_name}.1.", (*flax_path, "bn"), "bn"),
        _Entry(f"{torch_name}.3.", (*flax_path, "linear2"), "linear", bias),
    ]


def _head_names(state: dict) -> list[str]:
    """inv_head, inv_head1, inv_head2, ... in order."""
    names = {m.group(1): int(m.group(2) or 0) for k in state if (m := HEAD_PATTERN.match(k))}
    return sorted(names, key=names.get)


@dataclasses.dataclass(frozen=True)
class _HeadPart:
    """Modules stored beside the encoder (`heads`), under `subtree`, with their config."""

    subtree: str
    entries: list[_Entry]
    config: dict[str, Any]
    module: Any  # the Flax module, to check shapes against
    feature_dim: int


def _projection_heads_part(state: dict, source: str, subtree: str, bias: bool) -> _HeadPart:
    """Every `inv_head*` of the file as the Multi-MLP heads `subtree/head_j`."""
    names = _head_names(state)
    if not names:
        raise ConversionError(f"{source}: no projection head (inv_head.*) in the state_dict")
    entries = [
        entry
        for j, name in enumerate(names)
        for entry in _projection_head_entries(name, (subtree, f"head_{j}"), bias)
    ]
    hidden, feature_dim = (int(d) for d in state[f"{names[0]}.0.weight"].shape)
    dims = [int(state[f"{n}.3.weight"].shape[0]) for n in names]
    config = {"hidden": hidden, "dims": dims, "use_bias": bias}
    return _HeadPart(
        subtree, entries, config, ProjectionHeads(hidden, tuple(dims), bias), feature_dim
    )


def _classifier_part(state: dict) -> _HeadPart:
    """CrossPoint's DGCNN classifier (linear1..3, bn6, bn7) as `classifier`."""
    entries = [
        _Entry("linear1.", ("classifier", "linear1"), "linear"),
        _Entry("bn6.", ("classifier", "bn6"), "bn"),
        _Entry("linear2.", ("classifier", "linear2"), "linear", True),
        _Entry("bn7.", ("classifier", "bn7"), "bn"),
        _Entry("linear3.", ("classifier", "linear3"), "linear", True),
    ]
    num_classes = int(state["linear3.weight"].shape[0])
    hidden = (int(state["linear1.weight"].shape[0]), int(state["linear2.weight"].shape[0]))
    config = {"num_classes": num_classes, "hidden": list(hidden)}
    feature_dim = int(state["linear1.weight"].shape[1])
    return _HeadPart(
        "classifier", entries, config, ClassificationHead(num_classes, hidden), feature_dim
    )


def _convert(
    state: dict,
    source: str,
    *,
    tower: str,
    layout: str,
    trunk: list[_Entry],
    model_cfg: ml_collections.ConfigDict,
    example_input: tuple[int, ...],
    parts: list[_HeadPart],
    aliases: set[str] = frozenset(),
) -> ConvertedTower:
    """Reads trunk and head entries, checks every key was used and every shape fits."""
    reader = _Reader(state, source)
    params, stats, origin = reader.read(trunk)
    head_params, head_stats, head_origin = reader.read([e for part in parts for e in part.entries])
    reader.check_all_consumed(ignored=aliases)
    encoder = build_point_encoder(model_cfg) if tower == "point" else build_image_encoder(model_cfg)
    want = _abstract_variables(encoder, example_input)
    _check_shapes(_assemble(params, stats), want, origin, source)
    for part in parts:
        _check_shapes(
            _assemble(head_params.get(part.subtree, {}), head_stats.get(part.subtree, {})),
            _abstract_variables(part.module, (2, part.feature_dim)),
            _split_origin(head_origin, (part.subtree,)),
            source,
            (part.subtree,),
        )
    return ConvertedTower(
        tower,
        layout,
        _assemble(params, stats),
        model_cfg,
        _assemble(head_params, head_stats),
        {part.subtree: part.config for part in parts},
    )


def convert_dgcnn(
    state: dict[str, np.ndarray], k: int = 20, source: str = "state_dict"
) -> ConvertedTower:
    """CrossPoint or MM-Point DGCNN state_dict (already unwrapped) -> ConvertedTower."""
    state, aliases = _resolve_duplicate_batch_norms(state, source)
    widths = tuple(int(_require(state, f"conv{i}.0.weight", source).shape[0]) for i in range(1, 5))
    emb_dims = int(_require(state, "conv5.0.weight", source).shape[0])
    in_channels = int(state["conv1.0.weight"].shape[1]) // 2
    trunk = [_Entry(f"conv{i}.0.", (f"edgeconv{i}",), "linear") for i in range(1, 5)]
    trunk += [_Entry(f"bn{i}.", (f"edgeconv{i}", "bn"), "bn") for i in range(1, 5)]
    trunk += [_Entry("conv5.0.", ("conv5",), "linear"), _Entry("bn5.", ("bn5",), "bn")]
    parts = [_projection_heads_part(state, source, "point_heads", bias=True)]
    if "linear1.weight" in state:
        parts.append(_classifier_part(state))
    return _convert(
        state,
        source,
        tower="point",
        layout="mmpoint_dgcnn" if len(parts[0].config["dims"]) > 1 else "crosspoint_dgcnn",
        trunk=trunk,
        model_cfg=default_point_encoder_config("dgcnn", k=k, emb_dims=emb_dims, widths=widths),
        example_input=(2, k + 1, in_channels),
        parts=parts,
        aliases=aliases,
    )


def _resolve_duplicate_batch_norms(state: dict, source: str) -> tuple[dict, set[str]]:
    """`conv{i}.1.*` are the `bn{i}.*` tensors registered twice: check they agree, read `bn{i}.*`.

    Returns the state with every `bn{i}.*` present (taken from its alias when only that exists)
    and the alias keys, which the caller counts as read.
    """
    state = dict(state)
    aliases = set()
    for i in range(1, 6):
        for suffix in (*BN_SUFFIXES, "num_batches_tracked"):
            alias, main = f"conv{i}.1.{suffix}", f"bn{i}.{suffix}"
            if alias not in state:
                continue
            if main not in state:
                state[main] = state[alias]
            elif not np.array_equal(np.asarray(state[alias]), np.asarray(state[main])):
                raise ConversionError(
                    f"{source}: '{alias}' and '{main}' should be the same tensor but differ"
                )
            aliases.add(alias)
    return state, aliases


# ----------------------------------------------------------------------------- ResNet + head


def _resnet_blocks(state: dict, prefix: str) -> tuple[str, tuple[int, ...]]:
    counts = []
    for stage in range(1, 5):
        pattern = re.compile(rf"^{re.escape(prefix)}layer{stage}\.(\d+)\.")
        blocks = {int(m.group(1)) for k in state if (m := pattern.match(k))}
        counts.append(len(blocks))
    kind = "bottleneck" if any(k.endswith(".conv3.weight") for k in state) else "basic"
    for name, layout in RESNET_LAYOUTS.items():
        if layout == (kind, tuple(counts)):
            return name, tuple(counts)
    raise ConversionError(
        f"{prefix}*: {kind} blocks per stage {counts} match no ResNet of {sorted(RESNET_LAYOUTS)}"
    )


def convert_resnet_with_head(
    state: dict[str, np.ndarray], source: str = "state_dict", prefix: str = "resnet."
) -> ConvertedTower:
    """CrossPoint image model (`resnet.*` + `inv_head.*`) -> ConvertedTower (tower 'image')."""
    width = int(_require(state, prefix + "conv1.weight", source).shape[0])
    depth, blocks = _resnet_blocks(state, prefix)
    convs = 3 if RESNET_LAYOUTS[depth][0] == "bottleneck" else 2
    trunk = [
        _Entry(prefix + "conv1.", ("conv1",), "conv2d"),
        _Entry(prefix + "bn1.", ("bn1",), "bn"),
    ]
    for stage, count in enumerate(blocks, start=1):
        for block in range(count):
            p, path = f"{prefix}layer{stage}.{block}.", (f"layer{stage}_{block}",)
            for i in range(1, convs + 1):
                trunk.append(_Entry(f"{p}conv{i}.", (*path, f"conv{i}"), "conv2d"))
                trunk.append(_Entry(f"{p}bn{i}.", (*path, f"bn{i}"), "bn"))
            if p + "downsample.0.weight" in state:
                trunk.append(_Entry(p + "downsample.0.", (*path, "downsample_conv"), "conv2d"))
                trunk.append(_Entry(p + "downsample.1.", (*path, "downsample_bn"), "bn"))
    return _convert(
        state,
        source,
        tower="image",
        layout="crosspoint_image",
        trunk=trunk,
        model_cfg=default_image_encoder_config(depth, width=width),
        example_input=(1, 32, 32, 3),
        parts=[_projection_heads_part(state, source, "image_heads", bias=False)],
    )


CONVERTERS: dict[str, Callable[..., ConvertedTower]] = {
    "dgcnn": convert_dgcnn,
    "resnet50_head": convert_resnet_with_head,
}
