"""Raw photos in, aligned ArcFace crops out: reading photos as taken, detection, alignment.

Example:
>>> from keras_arcface.faces import FaceDetector, align_face
>>> faces = FaceDetector().detect(photo)  # doctest: +SKIP
>>> crop = align_face(photo, faces[0].landmarks)  # doctest: +SKIP
"""

from keras_arcface.faces.align import (
    ARCFACE_TEMPLATE,
    LANDMARK_NAMES,
    align_face,
    alignment_matrix,
    arcface_template,
    estimate_similarity,
)
from keras_arcface.faces.aligner import (
    AlignedFace,
    FaceAligner,
    ManyFacesError,
    NoFaceError,
    is_aligned_crop,
)
from keras_arcface.faces.detect import (
    Detector,
    Face,
    FaceDetector,
    ONetRefiner,
    YuNetDetector,
    get_detector,
    largest_face,
)
from keras_arcface.faces.photos import Photo, decode_photo, read_photo, scale_16_to_8
from keras_arcface.faces.transform import AlignTransform

__all__ = [
    "AlignTransform",
    "AlignedFace",
    "FaceAligner",
    "ManyFacesError",
    "NoFaceError",
    "is_aligned_crop",
    "ARCFACE_TEMPLATE",
    "Detector",
    "Face",
    "Photo",
    "FaceDetector",
    "LANDMARK_NAMES",
    "ONetRefiner",
    "YuNetDetector",
    "align_face",
    "alignment_matrix",
    "arcface_template",
    "estimate_similarity",
    "get_detector",
    "largest_face",
    "decode_photo",
    "read_photo",
    "scale_16_to_8",
]
