"""Data: procedural shapes, meshes and sampling, the render stage, the record schema,
readers for the real dataset formats, and grain input pipelines."""
