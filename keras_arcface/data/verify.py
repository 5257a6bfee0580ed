"""Deprecated module: the dataset check is :func:`keras_arcface.data.check.check_dataset`.

"Verify" in this package means face verification (two images, one person?); the record-by-
record scan of a dataset folder is a check.
"""

from keras_arcface._deprecation import renamed_function
from keras_arcface.data.check import check_dataset

verify_dataset = renamed_function(check_dataset, "verify_dataset")

__all__ = ["verify_dataset"]
