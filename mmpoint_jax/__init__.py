"""MM-Point in JAX/Flax: multi-view, multi-modal self-supervised point-cloud learning.

Subpackages, in the order data flows through them (DESIGN.md section 2):
  data/      procedural shapes, meshes, render stage, record schema, real-format readers, grain pipelines
  augment/   point and image augmentations (pure JAX, run inside the jitted step)
  models/    DGCNN, PointNet, ResNet, projection heads (Multi-MLP), the joint MMPoint model
  losses     NT-Xent, InfoNCE, intra and inter-plus losses (sharded over the global batch)
  train/     train state, pretraining and fine-tuning loops, checkpointing, device mesh
  evaluate/  linear SVM, few-shot, segmentation metrics, t-SNE
  convert/   import of CrossPoint / MM-Point PyTorch checkpoints
"""

__version__ = "0.1.0"
