"""Face detection with five landmarks, behind one small interface.

``Detector.detect(image) -> list[Face]``: every detector takes an RGB uint8 ``[H, W, 3]`` photo
and returns faces (box, score, five float landmarks in photo coordinates), best first. The
default, :class:`FaceDetector`, is two stages whose weights ship inside PyPI wheels (nothing is
downloaded, ever):

1. :class:`YuNetDetector`: YuNet (libfacedetection, BSD-3, the ``yuface`` wheel) finds boxes and
   rough landmarks. It is fast but gives whole-pixel landmarks, and it runs on a copy of the photo
   shrunk to ``max_side`` pixels (landmarks are mapped back to full resolution).
2. :class:`ONetRefiner`: MTCNN's ONet (Keras 3, weights from the ``mtcnn`` wheel) looks at a 48x48
   patch cut from the full-resolution photo around each face, turned upright using the rough
   landmarks, and returns sub-pixel landmarks and a face probability. Each patch is centered
   and turned upright by the previous pass until it stops moving (a sideways face converges too).

Why this pair, and what was measured: ``docs/faces.md``. Another detector plugs in by
subclassing :class:`Detector` (or any object with a ``detect`` method returning ``Face``s).
"""

import dataclasses
import math
import os
import warnings

import numpy as np

from keras_arcface.faces.align import LANDMARK_NAMES, transform_points
from keras_arcface.faces.onet import PATCH_SIZE, load_onet

_INSTALL_HINT = 'pip install "keras-arcface[faces]" (the yuface and mtcnn wheels)'


@dataclasses.dataclass
class Face:
    """One detected face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in photo pixels, float.
        score: Detection confidence in [0, 1].
        landmarks: float64 ``[5, 2]`` ``(x, y)`` points: image-left eye, image-right eye, nose
            tip, image-left mouth corner, image-right mouth corner.
        landmark_score: Face probability of the landmark stage (``None`` without one).
    """

    box: tuple
    score: float
    landmarks: np.ndarray
    landmark_score: float = None

    @property
    def area(self):
        """Box area in square pixels."""
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def to_dict(self):
        """JSON-ready dict: box, score, landmarks (named points) and landmark_score."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmark_score": None
            if self.landmark_score is None
            else round(float(self.landmark_score), 4),
            "landmarks": {
                name: [round(float(x), 3), round(float(y), 3)]
                for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks)
            },
        }


class Detector:
    """Interface: ``detect(image) -> list[Face]``, RGB uint8 ``[H, W, 3]`` photo in, best first."""

    def detect(self, image):
        raise NotImplementedError

    def __call__(self, image):
        return self.detect(image)


def check_photo(image):
    """Validates an RGB uint8 ``[H, W, 3]`` photo array and returns it contiguous.

    Example:
    >>> check_photo(np.zeros((4, 4, 3), np.uint8)).shape
    (4, 4, 3)
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "Expected a decoded photo as a NumPy array (read files with "
            f"keras_arcface.faces.read_photo). Received: image={type(image).__name__}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"Expected an RGB photo [H, W, 3]. Received: image.shape={image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"Expected uint8 pixels 0..255. Received: image.dtype={image.dtype}")
    return np.ascontiguousarray(image)


def largest_face(faces):
    """The face with the largest box (``None`` for an empty list)."""
    return max(faces, key=lambda face: face.area, default=None)


def _require_cv2():
    try:
        import cv2
    except ImportError as error:
        raise ImportError(f"Face detection needs OpenCV. {_INSTALL_HINT}") from error
    return cv2


class YuNetDetector(Detector):
    """YuNet boxes and whole-pixel landmarks (the ``yuface`` wheel; weights compiled in).

    Args:
        score_threshold: Minimum confidence in [0, 1], 0.5.
        max_side: The photo is shrunk (area interpolation) so that its longer side is at most this
            many pixels before detection, 640; results are mapped back to full resolution.
            Faces smaller than about 10 pixels at that scale are missed.

    Example:
    >>> faces = YuNetDetector().detect(photo)  # doctest: +SKIP
    """

    def __init__(self, score_threshold=0.5, max_side=640):
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ValueError(
                f"Expected score_threshold in [0, 1]. Received: score_threshold={score_threshold}"
            )
        if int(max_side) < 32:
            raise ValueError(f"Expected max_side >= 32. Received: max_side={max_side}")
        # yuface's bundled OpenMP spins its threads while waiting; on a shared or busy machine
        # that made each call 3.5x slower (measured at load 12). Only if the user set nothing,
        # and only read when yuface's own libgomp loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import yuface
        except ImportError as error:
            raise ImportError(f"The YuNet detector needs `yuface`. {_INSTALL_HINT}") from error
        self._yuface = yuface
        self.score_threshold = float(score_threshold)
        self.max_side = int(max_side)

    def detect(self, image):
        image = check_photo(image)
        small, scale = _shrink(image, self.max_side)
        bgr = np.ascontiguousarray(small[..., ::-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # yuface's "too large" warning: max_side handles it
            scores, boxes, points = self._yuface.detect(bgr, conf=self.score_threshold)
        faces = []
        for score, (x, y, w, h), flat in zip(scores, boxes, points):
            # yuface returns uint16 arrays: negative coordinates near the border wrap around.
            x, y, w, h = (float(np.int16(v)) for v in (x, y, w, h))
            landmarks = np.asarray(flat, np.int16).astype(np.float64).reshape(5, 2) / scale
            box = (x / scale, y / scale, (x + w) / scale, (y + h) / scale)
            faces.append(Face(box, float(score) / 100.0, landmarks))
        return sorted(faces, key=lambda face: -face.score)


def _shrink(image, max_side):
    longer = max(image.shape[:2])
    if longer <= max_side:
        return image, 1.0
    cv2 = _require_cv2()
    scale = max_side / longer
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # Use the exact scale of the rounded size on each axis' mean: the aspect changes by < 1 px.
    return small, (size[0] / image.shape[1] + size[1] / image.shape[0]) / 2.0


def roll_angle(landmarks):
    """In-plane rotation (radians) of a face from its five landmarks; 0 for an upright face.

    Combines the eye line and the eyes-to-mouth direction, so a face upside down gives pi.

    Example:
    >>> from keras_arcface.faces.align import ARCFACE_TEMPLATE
    >>> abs(round(roll_angle(ARCFACE_TEMPLATE), 2))
    0.0
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_line = points[1] - points[0]
    down = (points[3] + points[4]) / 2.0 - (points[0] + points[1]) / 2.0
    # Rotate "down" by -90 degrees so that both vectors point along +x for an upright face.
    direction = eye_line / max(np.linalg.norm(eye_line), 1e-9)
    direction += np.array([down[1], -down[0]]) / max(np.linalg.norm(down), 1e-9)
    return math.atan2(direction[1], direction[0])


class ONetRefiner:
    """Sub-pixel landmarks for given faces with MTCNN's ONet, on upright full-resolution patches.

    Args:
        model: An ONet Keras model; default :func:`keras_arcface.faces.onet.load_onet`.
        passes: Most patches per face, 10: each is centered and turned upright by the previous
            one, until the patch moves by under 1% of its side and 2 degrees. The landmarks
            are the mean of the last two passes, ``landmark_score`` the mean probability.

    Example:
    >>> faces = ONetRefiner().refine(photo, YuNetDetector().detect(photo))  # doctest: +SKIP
    """

    def __init__(self, model=None, passes=10):
        if int(passes) < 1:
            raise ValueError(f"Expected passes >= 1. Received: passes={passes}")
        self.model = model if model is not None else load_onet()
        self.passes = int(passes)
        self._predict = _fast_call(self.model)

    def refine(self, image, faces):
        """Returns new ``Face``s with refined landmarks and ``landmark_score`` set."""
        if not faces:
            return []
        image = check_photo(image)
        frames = [_initial_frame(face) for face in faces]
        history = [([], []) for _ in faces]  # per face: landmarks and scores of each pass
        active = list(range(len(faces)))
        for _ in range(self.passes):
            patches, matrices = zip(*(_cut_patch(image, frames[i]) for i in active))
            offsets, points, scores = self._predict(np.stack(patches))
            still_moving = []
            for row, i in enumerate(active):
                landmarks, box = _read_outputs(matrices[row], offsets[row], points[row])
                previous, frames[i] = frames[i], _next_frame(frames[i], landmarks, box)
                history[i][0].append(landmarks)
                history[i][1].append(float(scores[row][1]))
                if not _converged(previous, frames[i]):
                    still_moving.append(i)
            active = still_moving
            if not active:
                break
        # The last two passes often alternate around the answer: average them. A face's score
        # is its mean probability over all passes: a misread face wanders and scores low on
        # most of them even when one pass looks confident.
        return [
            dataclasses.replace(
                face, landmarks=np.mean(points[-2:], axis=0), landmark_score=float(np.mean(scores))
            )
            for face, (points, scores) in zip(faces, history)
        ]


def _converged(previous, current):
    """The patch moved by under 1% of its side and turned by under 2 degrees."""
    (center_a, side_a, angle_a), (center_b, side_b, angle_b) = previous, current
    shift = np.linalg.norm(center_b - center_a) + abs(side_b - side_a)
    turn = abs((angle_b - angle_a + math.pi) % (2 * math.pi) - math.pi)
    return shift < 0.01 * side_a and turn < math.radians(2.0)


def _fast_call(model):
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, PATCH_SIZE, PATCH_SIZE, 3], tf.float32)
        function = tf.function(lambda batch: model(batch, training=False), input_signature=[spec])
        return lambda batch: [np.asarray(t) for t in function(batch)]
    return lambda batch: [np.asarray(t) for t in model(batch, training=False)]


def _initial_frame(face):
    x1, y1, x2, y2 = face.box
    center = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    return center, max(x2 - x1, y2 - y1), roll_angle(face.landmarks)


def _patch_matrix(frame, size):
    """[2, 3] matrix from patch pixel (u, v) to photo (x, y); pixel centers at u + 0.5."""
    center, side, angle = frame
    step = side / size
    cos, sin = math.cos(angle) * step, math.sin(angle) * step
    rotation = np.array([[cos, -sin], [sin, cos]])
    offset = center - rotation @ np.array([size / 2.0 - 0.5, size / 2.0 - 0.5])
    return np.concatenate([rotation, offset[:, None]], axis=1)


def _cut_patch(image, frame):
    """An upright 48x48 patch (ONet's normalization), anti-aliased by area when shrinking."""
    cv2 = _require_cv2()
    factor = max(1, int(frame[1] / PATCH_SIZE))
    matrix = _patch_matrix(frame, PATCH_SIZE * factor)
    size = PATCH_SIZE * factor
    patch = cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    if factor > 1:
        patch = cv2.resize(patch, (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_AREA)
    normalized = (patch.astype(np.float32) - 127.5) / 128.0
    return normalized, _patch_matrix(frame, PATCH_SIZE)


def _read_outputs(matrix, offsets, points):
    """Photo landmarks [5, 2] and the corrected box (patch fractions) from one ONet output."""
    fractions = np.stack([points[:5], points[5:]], axis=1).astype(np.float64)
    # Fractions of the patch side; patch coordinate u covers [0, 48) with centers at u + 0.5.
    landmarks = transform_points(fractions * PATCH_SIZE - 0.5, matrix)
    box = np.array([offsets[0], offsets[1], 1.0 + offsets[2], 1.0 + offsets[3]], np.float64)
    return landmarks, box


def _next_frame(frame, landmarks, box):
    center, side, angle = frame
    box_center = np.array([(box[0] + box[2]) / 2.0 - 0.5, (box[1] + box[3]) / 2.0 - 0.5]) * side
    cos, sin = math.cos(angle), math.sin(angle)
    shift = np.array(
        [cos * box_center[0] - sin * box_center[1], sin * box_center[0] + cos * box_center[1]]
    )
    new_side = max(box[2] - box[0], box[3] - box[1]) * side
    return center + shift, new_side, roll_angle(landmarks)


class FaceDetector(Detector):
    """The default detector: YuNet boxes, then ONet sub-pixel landmarks (see the module docstring).

    Args:
        score_threshold: Minimum YuNet confidence, 0.5.
        landmark_threshold: Minimum ONet face probability on the upright patch, 0.8 (MTCNN's own
            ONet threshold). It drops YuNet's misreadings, such as an upside-down face read as
            an upright one with the landmarks in the wrong places (``docs/faces.md``).
        max_side: Longer side of the copy YuNet runs on, 640.
        passes: Most ONet passes per face, 10 (see ``ONetRefiner``).
        coarse: Another box detector to refine instead of YuNet (any ``Detector``).

    Example:
    >>> detector = FaceDetector()  # doctest: +SKIP
    >>> [face.to_dict()["landmarks"]["nose"] for face in detector.detect(photo)]  # doctest: +SKIP
    """

    def __init__(
        self, score_threshold=0.5, landmark_threshold=0.8, max_side=640, passes=10, coarse=None
    ):
        if not 0.0 <= float(landmark_threshold) <= 1.0:
            raise ValueError(
                "Expected landmark_threshold in [0, 1]. "
                f"Received: landmark_threshold={landmark_threshold}"
            )
        self.coarse = coarse or YuNetDetector(score_threshold=score_threshold, max_side=max_side)
        self.refiner = ONetRefiner(passes=passes)
        self.landmark_threshold = float(landmark_threshold)

    def detect(self, image):
        image = check_photo(image)
        faces = self.refiner.refine(image, self.coarse.detect(image))
        return [face for face in faces if face.landmark_score >= self.landmark_threshold]


DETECTORS = {"yunet_onet": FaceDetector, "yunet": YuNetDetector}


def get_detector(name="yunet_onet", **kwargs):
    """Builds a detector by name: ``"yunet_onet"`` (default) or ``"yunet"`` (whole-pixel points).

    A ``Detector`` instance is returned unchanged.

    Example:
    >>> detector = get_detector()  # doctest: +SKIP
    """
    if isinstance(name, Detector) or hasattr(name, "detect"):
        return name
    if name not in DETECTORS:
        raise ValueError(
            f"Expected a detector name in {sorted(DETECTORS)}. Received: name={name!r}"
        )
    return DETECTORS[name](**kwargs)
