"""Eval-mode feature extraction: batching with padding, one compilation, the CLI."""

import re

import numpy as np
import pytest

from mmpoint_jax import features
from mmpoint_jax.convert import convert_state_dict, synthetic
from mmpoint_jax.models import numpy_reference as ref
from mmpoint_jax.train import checkpointing

K = 4


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    state = synthetic.dgcnn_state_dict(np.random.default_rng(0))
    converted = convert_state_dict(state, "dgcnn", k=K)
    path = tmp_path_factory.mktemp("features") / "export"
    checkpointing.save_encoder(path, converted.variables, converted.model_config, source="test")
    return state, converted, path


def _clouds(count, seed=1):
    return np.random.default_rng(seed).normal(size=(count, 32, 3)).astype(np.float32)


def test_extract_features_pads_the_last_batch_and_compiles_once(export, monkeypatch):
    state, converted, _ = export
    encoders, calls = [], []
    make_encode_fn = features.make_encode_fn

    def recording_encode_fn(model_cfg):
        encoders.append(make_encode_fn(model_cfg))

        def encode(variables, points):
            calls.append(points.shape)
            return encoders[0](variables, points)

        return encode

    monkeypatch.setattr(features, "make_encode_fn", recording_encode_fn)
    features._encode_fn_for.cache_clear()  # a fresh compiled function, whatever ran before
    clouds = _clouds(21)
    got = features.extract_features(
        converted.model_config, converted.variables, clouds, batch_size=8
    )
    want, _, _ = ref.dgcnn_forward(state, clouds, K, train=False)
    assert got.shape == (21, 2 * converted.model_config.emb_dims) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert calls == [(8, 32, 3)] * 3  # 8 + 8 + 5 padded to 8
    assert encoders[0]._cache_size() == 1  # compiled once


def test_cli_writes_features_of_an_export(export, tmp_path, capsys):
    state, _, path = export
    clouds = _clouds(5, seed=2)
    np.save(tmp_path / "in.npy", clouds)
    assert (
        features.main(
            [str(path), str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--batch_size", "4"]
        )
        == 0
    )
    want, _, _ = ref.dgcnn_forward(state, clouds, K, train=False)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, rtol=1e-4, atol=1e-4)
    assert "features (5, 64)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((4, 32), np.float32), r"expected float point clouds \[M, N, 3\]"),
        (np.zeros((4, 32, 3), np.int32), "expected float point clouds"),
        (np.full((2, 32, 3), np.nan, np.float32), r"clouds \[0, 1\] contain NaN"),
    ],
)
def test_cli_names_the_bad_input_file(export, tmp_path, capsys, array, message):
    _, _, path = export
    np.save(tmp_path / "bad.npy", array)
    assert features.main([str(path), str(tmp_path / "bad.npy"), str(tmp_path / "out.npy")]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err
    assert re.search(message, err)
    assert not (tmp_path / "out.npy").exists()


def test_encode_fn_is_reused_across_calls(export):
    _, converted, _ = export
    first = features.make_encode_fn(converted.model_config)
    assert features.make_encode_fn(dict(converted.model_config)) is first
