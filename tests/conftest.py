"""Test-suite setup: CPU only, 8 fake devices, fixed before JAX is imported anywhere."""

import os

_FAKE_DEVICES = "--xla_force_host_platform_device_count=8"
if _FAKE_DEVICES not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAKE_DEVICES).strip()
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("MMPOINT_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Compiled programs are cached on disk and shared with the subprocesses tests start (resume,
# multi-process runs), which would otherwise each recompile the same train step.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ".pytest_cache",
        "jax_compilation_cache",
    ),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def eight_devices():
    import jax

    devices = jax.devices()
    assert len(devices) == 8, f"conftest should give 8 fake CPU devices, got {len(devices)}"
    return devices
