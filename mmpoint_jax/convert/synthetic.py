"""Random state_dicts in the PyTorch layouts the importer reads, as numpy arrays.

Built from the reference modules' definitions (CrossPoint's DGCNN / ResNet wrapper, MM-Point's
two-head DGCNN, the DGCNN repository's PointNet), independently of the key mapping in
`torch_layouts.py`, so tests can check the mapping against them; also handy to dry-run the
importer without downloading a checkpoint. Values are scaled so activations stay O(1); batch-norm
scales take both signs (a pretrained network can have negative ones, and the factorised EdgeConv
treats those channels differently).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}


def _weight(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32)


def batch_norm_state(rng: np.random.Generator, prefix: str, channels: int) -> dict[str, np.ndarray]:
    sign = np.where(rng.random(channels) < 0.25, -1.0, 1.0)
    return {
        prefix + "weight": (sign * rng.uniform(0.5, 1.5, channels)).astype(np.float32),
        prefix + "bias": (0.1 * rng.normal(size=channels)).astype(np.float32),
        prefix + "running_mean": (0.1 * rng.normal(size=channels)).astype(np.float32),
        prefix + "running_var": rng.uniform(0.5, 1.5, channels).astype(np.float32),
        prefix + "num_batches_tracked": np.array(1000, dtype=np.int64),
    }


def projection_head_state(
    rng: np.random.Generator, name: str, in_features: int, hidden: int, out: int, bias: bool
) -> dict[str, np.ndarray]:
    """nn.Sequential(Linear, BatchNorm1d, ReLU, Linear) registered as `name`."""
    state = {f"{name}.0.weight": _weight(rng, (hidden, in_features))}
    state.update(batch_norm_state(rng, f"{name}.1.", hidden))
    state[f"{name}.3.weight"] = _weight(rng, (out, hidden))
    if bias:
        state[f"{name}.0.bias"] = (0.1 * rng.normal(size=hidden)).astype(np.float32)
        state[f"{name}.3.bias"] = (0.1 * rng.normal(size=out)).astype(np.float32)
    return state


def dgcnn_state_dict(
    rng: np.random.Generator,
    emb_dims: int = 32,
    widths: Sequence[int] = (8, 8, 16, 16),
    head_dims: Sequence[int] = (16,),
    head_hidden: int | None = None,
    num_classes: int | None = None,
    in_channels: int = 3,
) -> dict[str, np.ndarray]:
    """CrossPoint DGCNN (one head) or MM-Point DGCNN (head_dims of length 2: inv_head, inv_head1).

    Every trunk batch norm appears as `bn{i}.*` and again as `conv{i}.1.*` (the same tensors),
    as `DGCNN.state_dict()` lists it.
    """
    state: dict[str, np.ndarray] = {}
    channels = in_channels
    for i, width in enumerate(widths, start=1):
        state[f"conv{i}.0.weight"] = _weight(rng, (width, 2 * channels, 1, 1))
        bn = batch_norm_state(rng, f"bn{i}.", width)
        state.update(bn)
        state.update({k.replace(f"bn{i}.", f"conv{i}.1."): v for k, v in bn.items()})
        channels = width
    state["conv5.0.weight"] = _weight(rng, (emb_dims, sum(widths), 1))
    bn5 = batch_norm_state(rng, "bn5.", emb_dims)
    state.update(bn5)
    state.update({k.replace("bn5.", "conv5.1."): v for k, v in bn5.items()})
    hidden = head_hidden or emb_dims
    for j, dim in enumerate(head_dims):
        state.update(
            projection_head_state(
                rng, "inv_head" + (str(j) if j else ""), 2 * emb_dims, hidden, dim, True
            )
        )
    if num_classes:
        state["linear1.weight"] = _weight(rng, (512, 2 * emb_dims))
        state.update(batch_norm_state(rng, "bn6.", 512))
        state["linear2.weight"] = _weight(rng, (256, 512))
        state["linear2.bias"] = (0.1 * rng.normal(size=256)).astype(np.float32)
        state.update(batch_norm_state(rng, "bn7.", 256))
        state["linear3.weight"] = _weight(rng, (num_classes, 256))
        state["linear3.bias"] = (0.1 * rng.normal(size=num_classes)).astype(np.float32)
    return state


def pointnet_state_dict(
    rng: np.random.Generator, emb_dims: int = 32, widths: Sequence[int] = (64, 64, 64, 128)
) -> dict[str, np.ndarray]:
    """The DGCNN repository's PointNet trunk: conv{1..5}.weight [out, in, 1] and bn{1..5}."""
    state: dict[str, np.ndarray] = {}
    channels = 3
    for i, width in enumerate((*widths, emb_dims), start=1):
        state[f"conv{i}.weight"] = _weight(rng, (width, channels, 1))
        state.update(batch_norm_state(rng, f"bn{i}.", width))
        channels = width
    return state


def resnet_state_dict(
    rng: np.random.Generator,
    depth: str = "resnet50",
    width: int = 8,
    head_hidden: int = 16,
    head_dim: int = 8,
    prefix: str = "resnet.",
) -> dict[str, np.ndarray]:
    """CrossPoint's image model: torchvision ResNet (fc = Identity) under `resnet.` + `inv_head`."""
    bottleneck = depth == "resnet50"
    expansion = 4 if bottleneck else 1
    state = {prefix + "conv1.weight": _weight(rng, (width, 3, 7, 7))}
    state.update(batch_norm_state(rng, prefix + "bn1.", width))
    in_channels = width
    for stage, blocks in enumerate(RESNET_BLOCKS[depth], start=1):
        planes = width * 2 ** (stage - 1)
        for block in range(blocks):
            p = f"{prefix}layer{stage}.{block}."
            if bottleneck:
                shapes = [
                    (planes, in_channels, 1, 1),
                    (planes, planes, 3, 3),
                    (planes * 4, planes, 1, 1),
                ]
            else:
                shapes = [(planes, in_channels, 3, 3), (planes, planes, 3, 3)]
            for i, shape in enumerate(shapes, start=1):
                state[f"{p}conv{i}.weight"] = _weight(rng, shape)
                state.update(batch_norm_state(rng, f"{p}bn{i}.", shape[0]))
            stride = 2 if (stage > 1 and block == 0) else 1
            if stride != 1 or in_channels != planes * expansion:
                state[p + "downsample.0.weight"] = _weight(
                    rng, (planes * expansion, in_channels, 1, 1)
                )
                state.update(batch_norm_state(rng, p + "downsample.1.", planes * expansion))
            in_channels = planes * expansion
    state.update(
        projection_head_state(rng, "inv_head", in_channels, head_hidden, head_dim, bias=False)
    )
    return state
