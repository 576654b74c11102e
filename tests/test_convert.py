"""PyTorch import: the three layouts round-trip to the numpy reference; bad files fail by name."""

import jax
import numpy as np
import pytest

from mmpoint_jax.convert import ConversionError, convert_state_dict, synthetic, write_export
from mmpoint_jax.convert.__main__ import main as convert_main
from mmpoint_jax.models import ProjectionHeads, build_image_encoder, build_point_encoder
from mmpoint_jax.models import numpy_reference as ref
from mmpoint_jax.train import checkpointing

K = 4


def _mmpoint_release(state):
    """The released MM-Point file: {'state_dict': ...} with DataParallel's 'module.' prefix."""
    return {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 99}


LAYOUTS = {
    "crosspoint_dgcnn": (
        "dgcnn",
        lambda rng: synthetic.dgcnn_state_dict(rng, head_dims=(16,), num_classes=7),
        lambda s: s,
    ),
    "mmpoint_dgcnn": (
        "dgcnn",
        lambda rng: synthetic.dgcnn_state_dict(rng, head_dims=(16, 8)),
        _mmpoint_release,
    ),
    "crosspoint_image": (
        "resnet50_head",
        lambda rng: synthetic.resnet_state_dict(
            rng, "resnet50", width=4, head_hidden=16, head_dim=8
        ),
        lambda s: s,
    ),
}


def _heads_forward(restored, x):
    """Apply the restored projection heads (stored beside the encoder) in eval mode."""
    name = "point_heads" if restored.tower == "point" else "image_heads"
    cfg = restored.heads_model[name]
    heads = ProjectionHeads(cfg.hidden, tuple(cfg.dims), cfg.use_bias)
    variables = {c: restored.heads[c][name] for c in ("params", "batch_stats")}
    return heads.apply(variables, x, train=False)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_round_trip_to_the_numpy_reference(tmp_path, layout):
    """random state_dict -> convert -> export -> restore -> same numbers as the reference."""
    model_kind, make, wrap = LAYOUTS[layout]
    state = make(np.random.default_rng(0))
    converted = convert_state_dict(wrap(state), model_kind, k=K, source=f"{layout}.pth")
    assert converted.layout == layout
    write_export(converted, tmp_path / "export")
    restored = checkpointing.restore_encoder(tmp_path / "export", tower=converted.tower)
    rng = np.random.default_rng(1)
    if converted.tower == "point":
        inputs = rng.normal(size=(2, 48, 3)).astype(np.float32)
        want, _, _ = ref.dgcnn_forward(state, inputs, K, train=False)
        got = build_point_encoder(restored.model).apply(restored.variables, inputs, train=False)[0]
        head_names = ["inv_head", "inv_head1"][: len(restored.heads_model.point_heads.dims)]
    else:
        inputs = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
        want, _ = ref.resnet_forward(state, "resnet.", inputs, train=False)
        got = jax.jit(lambda v, x: build_image_encoder(restored.model).apply(v, x, train=False))(
            restored.variables, inputs
        )
        head_names = ["inv_head"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    for got_head, name in zip(_heads_forward(restored, np.asarray(got)), head_names, strict=True):
        want_head, _ = ref.projection_head_forward(state, name + ".", want, train=False)
        np.testing.assert_allclose(got_head, want_head, rtol=1e-4, atol=1e-4)
    if layout == "crosspoint_dgcnn":
        assert restored.heads_model.classifier.num_classes == 7
        assert set(restored.heads["params"]) == {"point_heads", "classifier"}


def _dgcnn_state():
    return synthetic.dgcnn_state_dict(np.random.default_rng(2))


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda s: s.update({"conv9.0.weight": np.zeros((1, 1, 1, 1))}),
            r"unknown keys \['conv9.0.weight'\]",
        ),
        (lambda s: s.pop("inv_head.3.bias"), r"missing keys \['inv_head.3.bias'\]"),
        (
            lambda s: [s.pop("bn2.running_var"), s.pop("conv2.1.running_var")],
            r"missing keys \['bn2.running_var'\]",
        ),
        (
            lambda s: s.update({"inv_head.1.running_mean": np.zeros(5, np.float32)}),
            r"inv_head.1.running_mean: shape \(5,\)",
        ),
        (
            lambda s: s.update({"conv2.1.weight": s["conv2.1.weight"] + 1}),
            "'conv2.1.weight' and 'bn2.weight' should be the same tensor",
        ),
        (lambda s: s.pop("conv5.0.weight"), "key 'conv5.0.weight' not found"),
    ],
)
def test_bad_state_dicts_are_reported_by_key(edit, message):
    state = _dgcnn_state()
    edit(state)
    with pytest.raises(ConversionError, match=message):
        convert_state_dict(state, "dgcnn", source="bad.pth")


def test_trunk_batch_norms_may_come_under_either_name():
    state = _dgcnn_state()
    only_alias = {k: v for k, v in state.items() if not k.startswith("bn")}
    converted = convert_state_dict(only_alias, "dgcnn")
    np.testing.assert_array_equal(
        converted.variables["batch_stats"]["edgeconv3"]["bn"]["var"], state["bn3.running_var"]
    )


def test_partial_module_prefix_and_wrong_model_are_errors():
    state = _dgcnn_state()
    state["module.extra"] = np.zeros(1)
    with pytest.raises(ConversionError, match="module"):
        convert_state_dict(state, "dgcnn")
    with pytest.raises(ConversionError, match="resnet.conv1.weight"):
        convert_state_dict(_dgcnn_state(), "resnet50_head")


def test_cli_reads_pth_with_weights_only_loader_and_refuses_pickles(tmp_path, capsys):
    torch = pytest.importorskip("torch")  # the optional [torch] extra; installed by `make test`
    state = _dgcnn_state()
    pth = tmp_path / "crosspoint.pth"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, pth)
    assert convert_main([str(pth), str(tmp_path / "out"), "--model", "dgcnn", "--k", str(K)]) == 0
    restored = checkpointing.restore_encoder(tmp_path / "out")
    assert restored.source == "pytorch:crosspoint_dgcnn" and restored.model.k == K
    np.testing.assert_array_equal(
        restored.variables["params"]["edgeconv1"]["kernel"], state["conv1.0.weight"][:, :, 0, 0].T
    )

    unsafe = tmp_path / "unsafe.pth"
    torch.save(
        {
            "state_dict": {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
            "obj": Opaque(),
        },
        unsafe,
    )
    assert convert_main([str(unsafe), str(tmp_path / "refused"), "--model", "dgcnn"]) == 2
    assert "--trust_pickle" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert (
        convert_main([str(unsafe), str(tmp_path / "trusted"), "--model", "dgcnn", "--trust_pickle"])
        == 0
    )
    assert (
        convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "x"), "--model", "dgcnn"]) == 2
    )


class Opaque:
    """An arbitrary Python object: only full unpickling can rebuild it."""
