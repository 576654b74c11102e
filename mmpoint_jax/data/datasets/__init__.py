"""Readers for the real dataset files (DATA_FORMATS.md A1, A3, A5, A6): ModelNet40/10 h5,
ScanObjectNN h5, ShapeNetPart h5 and txt, S3DIS blocks. They return plain numpy dataclasses."""

from mmpoint_jax.data.datasets.common import (
    DatasetFormatError,
    PartSegSet,
    PointCloudSet,
    SemSegSet,
)
from mmpoint_jax.data.datasets.modelnet import (
    load_modelnet10_h5,
    load_modelnet40_h5,
    load_modelnet_h5,
)
from mmpoint_jax.data.datasets.s3dis import (
    area_split_indices,
    load_s3dis_h5,
    six_fold_indices,
)
from mmpoint_jax.data.datasets.scanobjectnn import load_scanobjectnn_h5, scanobjectnn_file
from mmpoint_jax.data.datasets.shapenetpart import load_shapenetpart_h5, load_shapenetpart_txt

__all__ = [
    "DatasetFormatError",
    "PartSegSet",
    "PointCloudSet",
    "SemSegSet",
    "area_split_indices",
    "load_modelnet10_h5",
    "load_modelnet40_h5",
    "load_modelnet_h5",
    "load_s3dis_h5",
    "load_scanobjectnn_h5",
    "load_shapenetpart_h5",
    "load_shapenetpart_txt",
    "scanobjectnn_file",
    "six_fold_indices",
]
