"""Data: image sets, loaders, scenarios, batching."""

from nscl.data.base import FileImageSet, ImageSet, TensorImageSet
from nscl.data.continual import ContinualData
from nscl.data.datasets import DATASETS, DatasetNotFoundError, load_dataset
from nscl.data.loading import BatchTransform, iterate_batches
from nscl.data.scenario import Scenario, available_class_orders, load_class_order

__all__ = [
    "BatchTransform",
    "ContinualData",
    "DATASETS",
    "DatasetNotFoundError",
    "FileImageSet",
    "ImageSet",
    "Scenario",
    "TensorImageSet",
    "available_class_orders",
    "iterate_batches",
    "load_class_order",
    "load_dataset",
]
