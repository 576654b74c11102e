"""Downstream evaluation of frozen features: metrics (classification, part and semantic
segmentation), linear SVM, few-shot episodes, t-SNE and confusion-matrix figures.

scikit-learn is imported here and nowhere else in the package (and only inside the functions
that need it, so importing `mmpoint_jax.evaluate.metrics` stays cheap)."""
