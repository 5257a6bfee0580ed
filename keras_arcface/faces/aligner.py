"""``FaceAligner``: a photo (file, bytes or array) in, aligned ArcFace crops out."""

import dataclasses

import numpy as np

from keras_arcface.errors import InputError
from keras_arcface.faces.align import TEMPLATE_SIZE, align_face, arcface_template
from keras_arcface.faces.detect import get_detector, largest_face
from keras_arcface.faces.photos import read_photo

FACE_CHOICES = ("only", "largest", "all")


class NoFaceError(InputError):
    """No face (above the score threshold) was found in a photo."""


class ManyFacesError(InputError):
    """Several faces were found where one was expected and no choice was given."""


@dataclasses.dataclass
class AlignedFace:
    """An aligned crop and the detection it came from.

    Attributes:
        crop: uint8 RGB ``[S, S, 3]`` on the ArcFace template.
        face: The :class:`~keras_arcface.faces.Face` (box, score, landmarks in the photo).
    """

    crop: np.ndarray
    face: object

    def to_dict(self):
        """The detection as JSON-ready dict (box, score, landmarks)."""
        return self.face.to_dict()


def is_aligned_crop(image, image_size=TEMPLATE_SIZE):
    """Whether ``image`` already has the aligned crop's shape ``[S, S, C]`` (the pass-through test).

    Example:
    >>> is_aligned_crop(np.zeros((112, 112, 3), np.uint8))
    True
    """
    shape = np.shape(image)
    return len(shape) == 3 and shape[0] == shape[1] == image_size


class FaceAligner:
    """Detects faces in a photo and warps each onto the ArcFace template (``norm_crop``).

    Args:
        detector: A ``Detector`` or a detector name (default ``"yunet_onet"``, see
            ``keras_arcface.faces.detect``); built on first use.
        image_size: Side of the output crops, 112 (other sizes follow InsightFace's rule).
        min_score: Faces scoring below this are ignored, 0.0 (the detector's own threshold).

    Example:
    >>> aligner = FaceAligner()  # doctest: +SKIP
    >>> crops = aligner.align("group.jpg", face="all")  # doctest: +SKIP
    >>> crops[0].crop.shape  # doctest: +SKIP
    (112, 112, 3)
    """

    def __init__(self, detector=None, image_size=TEMPLATE_SIZE, min_score=0.0):
        arcface_template(image_size)  # validates the size
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"Expected min_score in [0, 1]. Received: min_score={min_score}")
        self._detector = detector
        self.image_size = int(image_size)
        self.min_score = float(min_score)

    @property
    def detector(self):
        """The detector (built on first use: loading it takes a second)."""
        if self._detector is None or isinstance(self._detector, str):
            self._detector = get_detector(self._detector or "yunet_onet")
        return self._detector

    def detect(self, photo):
        """``(pixels, faces)``: the photo read as RGB and its faces scoring >= ``min_score``."""
        pixels = read_photo(photo)
        return pixels, [f for f in self.detector.detect(pixels) if f.score >= self.min_score]

    def align(self, photo, face="largest", name=None):
        """Aligned crops of the faces in ``photo``.

        Args:
            photo: A path, encoded bytes or an RGB array.
            face: ``"largest"`` (default: one crop, the largest face), ``"all"`` (one crop per
                face, best score first) or ``"only"`` (one crop; several faces is an error).
            name: What to call the photo in error messages (default: the path).

        Returns:
            A list of :class:`AlignedFace` (empty when no face was found, unless
            ``face="only"``, which raises :class:`NoFaceError`).
        """
        if face not in FACE_CHOICES:
            raise ValueError(f"Expected face in {FACE_CHOICES}. Received: face={face!r}")
        pixels, faces = self.detect(photo)
        label = name or (photo if isinstance(photo, str) else "the photo")
        faces = choose_faces(faces, face, label)
        return [
            AlignedFace(align_face(pixels, found.landmarks, self.image_size), found)
            for found in faces
        ]


def choose_faces(faces, face, label):
    """Applies the ``face`` choice (see :meth:`FaceAligner.align`) to detected ``faces``."""
    if face == "all":
        return list(faces)
    if face == "largest":
        return [largest_face(faces)] if faces else []
    if not faces:
        raise NoFaceError(
            f"No face found in {label}. Use a photo where the face is visible and at least "
            "about 20 pixels wide, or pass an aligned 112x112 crop. Received: faces=0"
        )
    if len(faces) > 1:
        raise ManyFacesError(
            f"Found {len(faces)} faces in {label}; say which one: face='largest' "
            "(--face largest) or one embedding per face (Embedder.embed_faces, "
            f"keras-arcface embed). Received: faces={len(faces)}"
        )
    return list(faces)
