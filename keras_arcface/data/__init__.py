"""Data for keras-arcface: TFRecord datasets, converters, verification sets, synthetic faces.

Main entry points:
    make_dataset        the tf.data training/evaluation pipeline over a TFRecord folder
    read_manifest       the manifest of a TFRecord dataset folder
    load_bin, write_bin InsightFace .bin verification sets (read through a safe unpickler)
    read_pairs_txt      LFW-style pairs.txt lists
    convert_image_folder, convert_recordio   converters to TFRecords
    generate_synthetic, render_identities    the built-in synthetic identities

Attributes load lazily so that importing one converter (or the synthetic renderer in a
worker process) does not import TensorFlow.
"""

import importlib

_LAZY = {
    "make_dataset": "keras_arcface.data.pipeline",
    "AugmentConfig": "keras_arcface.data.pipeline",
    "ErrorCounter": "keras_arcface.data.pipeline",
    "read_manifest": "keras_arcface.data.schema",
    "read_labels_tsv": "keras_arcface.data.schema",
    "serialize_example": "keras_arcface.data.schema",
    "SCHEMA_VERSION": "keras_arcface.data.schema",
    "ImageRecord": "keras_arcface.data.tfrecord_writer",
    "TFRecordDatasetWriter": "keras_arcface.data.tfrecord_writer",
    "write_records": "keras_arcface.data.tfrecord_writer",
    "load_bin": "keras_arcface.data.verification_bin",
    "write_bin": "keras_arcface.data.verification_bin",
    "VerificationSet": "keras_arcface.data.verification_bin",
    "RestrictedUnpickler": "keras_arcface.data.verification_bin",
    "read_pairs_txt": "keras_arcface.data.pairs",
    "make_pairs": "keras_arcface.data.pairs",
    "PairList": "keras_arcface.data.pairs",
    "convert_image_folder": "keras_arcface.data.image_folder",
    "convert_recordio": "keras_arcface.data.recordio",
    "RecordIOReader": "keras_arcface.data.recordio",
    "check_dataset": "keras_arcface.data.check",
    "verify_dataset": "keras_arcface.data.verify",  # deprecated name of check_dataset
    "generate_synthetic": "keras_arcface.data.synthetic",
    "render_identities": "keras_arcface.data.synthetic",
    "SyntheticDifficulty": "keras_arcface.data.synthetic",
    "DataError": "keras_arcface.data.errors",
    "UnsafePickleError": "keras_arcface.data.errors",
    "SkipReport": "keras_arcface.data.errors",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_arcface.data' has no attribute '{name}'")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
