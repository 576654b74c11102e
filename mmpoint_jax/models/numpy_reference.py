"""Plain numpy versions of the PyTorch reference networks, run straight from a PyTorch state_dict.

Written to be obviously correct, not fast: channels-first tensors like PyTorch, the edge tensor
materialised, BatchNorm as `torch.nn.BatchNorm*` computes it (train mode: biased batch variance
to normalise, running statistics updated with momentum 0.1 and the unbiased variance). Tests
compare the Flax models and the PyTorch importer against these; nothing in training uses them.

Every function takes `state` = {PyTorch key: numpy array} (without any `module.` prefix) and
returns its output plus, in train mode, the updated running statistics under PyTorch keys.
"""

from __future__ import annotations

import numpy as np

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # PyTorch convention
LEAKY_SLOPE = 0.2


def leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, LEAKY_SLOPE * x)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def batch_norm(x: np.ndarray, state: dict, prefix: str, train: bool, updates: dict) -> np.ndarray:
    """BatchNorm over axis 1 (channels) of x [B, C, ...], as torch.nn.BatchNorm{1,2}d."""
    axes = tuple(i for i in range(x.ndim) if i != 1)
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    if train:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)  # biased: used to normalise
        n = x.size // x.shape[1]
        updates[prefix + "running_mean"] = (1 - BN_MOMENTUM) * state[
            prefix + "running_mean"
        ] + BN_MOMENTUM * mean
        updates[prefix + "running_var"] = (1 - BN_MOMENTUM) * state[
            prefix + "running_var"
        ] + BN_MOMENTUM * var * n / (n - 1)
    else:
        mean, var = state[prefix + "running_mean"], state[prefix + "running_var"]
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + BN_EPS)
    return x_hat * state[prefix + "weight"].reshape(shape) + state[prefix + "bias"].reshape(shape)


def linear(x: np.ndarray, state: dict, prefix: str) -> np.ndarray:
    y = x @ state[prefix + "weight"].T
    if prefix + "bias" in state:
        y = y + state[prefix + "bias"]
    return y


# ----------------------------------------------------------------------------- DGCNN


def knn(x: np.ndarray, k: int) -> np.ndarray:
    """x [B, C, N] -> idx [B, N, k], ranking by 2<xi,xj> - |xi|^2 - |xj|^2 (self included)."""
    inner = -2 * np.einsum("bcn,bcm->bnm", x, x)
    xx = np.sum(x**2, axis=1, keepdims=True)  # [B, 1, N]
    pairwise = -xx - inner - np.transpose(xx, (0, 2, 1))
    return np.argsort(-pairwise, axis=-1, kind="stable")[:, :, :k]


def graph_feature(x: np.ndarray, k: int, idx: np.ndarray | None = None) -> np.ndarray:
    """x [B, C, N] -> [B, 2C, N, k]: concat(x_j - x_i, x_i) over the k neighbours j of i."""
    if idx is None:
        idx = knn(x, k)
    points = np.transpose(x, (0, 2, 1))  # [B, N, C]
    neighbours = np.stack([points[b][idx[b]] for b in range(x.shape[0])])  # [B, N, k, C]
    centre = np.repeat(points[:, :, None, :], idx.shape[-1], axis=2)
    return np.transpose(np.concatenate([neighbours - centre, centre], axis=-1), (0, 3, 1, 2))


def dgcnn_forward(
    state: dict, points: np.ndarray, k: int, train: bool, idx: list | None = None
) -> tuple[np.ndarray, dict, list]:
    """CrossPoint's DGCNN trunk: points [B, N, 3] -> (feature [B, 2*emb_dims], stats, neighbours).

    `idx`, if given, fixes the neighbour lists of the four EdgeConv layers (list of [B, N, k]),
    for parity tests where near-ties could pick different neighbours in two frameworks; the
    lists used are returned either way.
    """
    updates: dict = {}
    x = np.transpose(points, (0, 2, 1)).astype(np.float64)  # [B, C, N]
    outputs, used = [], []
    for layer in range(1, 5):
        layer_idx = knn(x, k) if idx is None else idx[layer - 1]
        used.append(layer_idx)
        edges = graph_feature(x, k, layer_idx)  # [B, 2C, N, k]
        w = state[f"conv{layer}.0.weight"][:, :, 0, 0]  # [Cout, 2C]
        y = np.einsum("oc,bcnk->bonk", w, edges)
        y = leaky_relu(batch_norm(y, state, f"bn{layer}.", train, updates))
        x = y.max(axis=-1)  # [B, Cout, N]
        outputs.append(x)
    x = np.concatenate(outputs, axis=1)  # [B, 512, N]
    x = np.einsum("oc,bcn->bon", state["conv5.0.weight"][:, :, 0], x)
    x = leaky_relu(batch_norm(x, state, "bn5.", train, updates))
    return np.concatenate([x.max(axis=-1), x.mean(axis=-1)], axis=1), updates, used


def projection_head_forward(
    state: dict, prefix: str, x: np.ndarray, train: bool
) -> tuple[np.ndarray, dict]:
    """nn.Sequential(Linear, BatchNorm1d, ReLU, Linear) under `prefix` (e.g. 'inv_head.')."""
    updates: dict = {}
    h = relu(batch_norm(linear(x, state, prefix + "0."), state, prefix + "1.", train, updates))
    return linear(h, state, prefix + "3."), updates


def classifier_forward(state: dict, x: np.ndarray) -> np.ndarray:
    """DGCNN classifier linear1 - bn6 - leaky - linear2 - bn7 - leaky - linear3, eval mode."""
    h = leaky_relu(batch_norm(linear(x, state, "linear1."), state, "bn6.", False, {}))
    h = leaky_relu(batch_norm(linear(h, state, "linear2."), state, "bn7.", False, {}))
    return linear(h, state, "linear3.")


def pointnet_forward(state: dict, points: np.ndarray, train: bool) -> tuple[np.ndarray, dict]:
    """DGCNN-repo PointNet trunk: conv1..5 (1x1, no bias) - BN - ReLU, max-pool over points."""
    updates: dict = {}
    x = np.transpose(points, (0, 2, 1)).astype(np.float64)
    for layer in range(1, 6):
        x = np.einsum("oc,bcn->bon", state[f"conv{layer}.weight"][:, :, 0], x)
        x = relu(batch_norm(x, state, f"bn{layer}.", train, updates))
    return x.max(axis=-1), updates


# ----------------------------------------------------------------------------- ResNet


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """x [B, C, H, W], weight [O, C, kh, kw] -> [B, O, H', W'] (torch.nn.functional.conv2d)."""
    kh, kw = weight.shape[2:]
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(
        x, (kh, kw), axis=(2, 3)
    )  # [B, C, H'', W'', kh, kw]
    windows = windows[:, :, ::stride, ::stride]
    return np.einsum("bchwij,ocij->bohw", windows, weight)


def max_pool_3x3_s2(x: np.ndarray) -> np.ndarray:
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    return windows.max(axis=(-1, -2))


def resnet_forward(
    state: dict, prefix: str, images: np.ndarray, train: bool
) -> tuple[np.ndarray, dict]:
    """torchvision ResNet (any depth/width) without fc: images [B, H, W, 3] -> [B, F], stats."""
    updates: dict = {}
    x = np.transpose(images, (0, 3, 1, 2)).astype(np.float64)
    x = conv2d(x, state[prefix + "conv1.weight"], 2, 3)
    x = max_pool_3x3_s2(relu(batch_norm(x, state, prefix + "bn1.", train, updates)))
    for stage in range(1, 5):
        block = 0
        while f"{prefix}layer{stage}.{block}.conv1.weight" in state:
            p = f"{prefix}layer{stage}.{block}."
            stride = 2 if (stage > 1 and block == 0) else 1
            bottleneck = p + "conv3.weight" in state
            convs = ["conv1", "conv2", "conv3"] if bottleneck else ["conv1", "conv2"]
            strided = "conv2" if bottleneck else "conv1"  # torchvision v1.5: stride on the 3x3
            y = x
            for i, name in enumerate(convs):
                w = state[p + name + ".weight"]
                conv_stride = stride if name == strided else 1
                y = conv2d(y, w, conv_stride, w.shape[-1] // 2)
                y = batch_norm(y, state, f"{p}bn{i + 1}.", train, updates)
                if i < len(convs) - 1:
                    y = relu(y)
            shortcut = x
            if p + "downsample.0.weight" in state:
                shortcut = conv2d(x, state[p + "downsample.0.weight"], stride, 0)
                shortcut = batch_norm(shortcut, state, p + "downsample.1.", train, updates)
            x = relu(y + shortcut)
            block += 1
    return x.mean(axis=(2, 3)), updates
