"""``AlignTransform``: the converters' per-item hook that detects and aligns a face."""

import threading

from keras_arcface.errors import bad_item
from keras_arcface.faces.align import TEMPLATE_SIZE, align_face, arcface_template
from keras_arcface.faces.detect import get_detector, largest_face


class AlignTransform:
    """``transform(pixels, name) -> crop``: the largest face of a photo, aligned (``norm_crop``).

    Plugs into the converters (``StoreOptions(transform=...)``, ``write_pairs_bin``;
    ``keras-arcface convert images|bin ... --align``). A photo without a face scoring at least
    ``min_score`` raises a ``DataError`` ("no face"), which the converter's ``on_error`` policy
    stops on or counts. The detector is shared by the converter's threads behind a lock.

    Args:
        image_size: Side of the crops, 112.
        min_score: Minimum detection score, 0.7.
        detector: A ``Detector`` or a detector name (default ``"yunet_onet"``).

    Example:
    >>> transform = AlignTransform()  # doctest: +SKIP
    >>> crop = transform(photo_pixels, "alice/1.jpg")  # doctest: +SKIP
    """

    def __init__(self, image_size=TEMPLATE_SIZE, min_score=0.7, detector=None):
        arcface_template(image_size)
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"Expected min_score in [0, 1]. Received: min_score={min_score}")
        self.image_size = int(image_size)
        self.min_score = float(min_score)
        self.detector = get_detector(detector or "yunet_onet")
        self._lock = threading.Lock()

    def __call__(self, pixels, name):
        with self._lock:
            faces = self.detector.detect(pixels)
        kept = [face for face in faces if face.score >= self.min_score]
        if not kept:
            detail = (
                f"{len(faces)} face(s) below min_score {self.min_score}" if faces else "0 faces"
            )
            raise bad_item("no face", name, detail)
        return align_face(pixels, largest_face(kept).landmarks, self.image_size)
