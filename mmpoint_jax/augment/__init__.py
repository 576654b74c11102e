"""On-device augmentations, pure JAX functions of (batch, per-example keys, config) that run
inside the jitted train step: `points` (CrossPoint's 3D chain), `images` (the multi-level view
ladder), `keys` (per-example keys from seed, step and global stream position)."""
