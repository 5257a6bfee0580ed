"""ArcFace 5-point alignment: the template, the similarity estimate and the warp.

The ArcFace recognition models (Deng et al., arXiv 1801.07698) are trained on crops made by one
procedure, InsightFace's ``norm_crop``: a least-squares similarity transform (rotation, uniform
scale, translation: 4 degrees of freedom, Umeyama's estimate) from five facial landmarks to a fixed
112x112 template, then a bilinear warp. A crop made any other way costs accuracy silently, so this
module reproduces that procedure exactly (the tests check it against scikit-image's estimate and a
NumPy bilinear sampler).

Landmarks are ``[5, 2]`` arrays of ``(x, y)`` image coordinates (pixel centers at integer
coordinates), in the order: image-left eye, image-right eye, nose tip, image-left mouth corner,
image-right mouth corner.
"""

import numpy as np

# InsightFace python-package/insightface/utils/face_align.py, ``arcface_dst``.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
TEMPLATE_SIZE = 112
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def arcface_template(image_size=TEMPLATE_SIZE):
    """Returns the ArcFace template ``[5, 2]`` (float64) for square crops of side ``image_size``.

    InsightFace's rule: a multiple of 112 scales the 112 template by ``image_size / 112``; any
    other size scales it by ``image_size / 128`` and shifts x by ``8 * image_size / 128`` (the
    template was drawn on 128-pixel crops with 8 pixels of margin on each side).

    Args:
        image_size: Side of the square output crop in pixels, 112 by default.

    Example:
    >>> arcface_template(224)[0]
    array([ 76.5892, 103.3926])
    """
    image_size = _check_image_size(image_size)
    if image_size % TEMPLATE_SIZE == 0:
        return ARCFACE_TEMPLATE * (image_size / TEMPLATE_SIZE)
    template = ARCFACE_TEMPLATE * (image_size / 128.0)
    template[:, 0] += 8.0 * image_size / 128.0
    return template


def estimate_similarity(landmarks, template):
    """Least-squares similarity (4 degrees of freedom) mapping ``landmarks`` onto ``template``.

    Solves ``[x -y 1 0; y x 0 1] @ [a, b, tx, ty] = [u, v]`` in the least-squares sense; with
    ``a = s cos(t)``, ``b = s sin(t)`` this is the same minimiser as Umeyama's closed form without
    reflection (what ``skimage.transform.SimilarityTransform.estimate`` computes for InsightFace).

    Args:
        landmarks: ``[N, 2]`` source points (N >= 2), ``(x, y)``.
        template: ``[N, 2]`` destination points.

    Returns:
        The float64 ``[2, 3]`` matrix ``M`` with ``template ~= landmarks @ M[:, :2].T + M[:, 2]``.

    Example:
    >>> estimate_similarity(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE).round(6)
    array([[ 1., -0.,  0.],
           [ 0.,  1.,  0.]])
    """
    source = _check_points(landmarks, "landmarks")
    target = _check_points(template, "template")
    if source.shape != target.shape:
        raise ValueError(
            "Expected as many landmarks as template points. "
            f"Received: landmarks.shape={source.shape}, template.shape={target.shape}"
        )
    # Center both sets first: better conditioned, same minimiser.
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    x, y = (source - source_mean).T
    design = np.zeros((2 * len(source), 2))
    design[0::2] = np.stack([x, -y], axis=1)
    design[1::2] = np.stack([y, x], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, (target - target_mean).reshape(-1), rcond=None)
    if a == 0.0 and b == 0.0:
        raise ValueError(
            "The landmarks are degenerate (all points coincide); no similarity maps them to the "
            f"template. Received: landmarks={source.tolist()}"
        )
    rotation = np.array([[a, -b], [b, a]])
    translation = target_mean - rotation @ source_mean
    return np.concatenate([rotation, translation[:, None]], axis=1)


def alignment_matrix(landmarks, image_size=TEMPLATE_SIZE):
    """The ``[2, 3]`` matrix from photo to aligned-crop coordinates (``norm_crop``'s ``M``).

    Args:
        landmarks: ``[5, 2]`` landmarks in the photo (order in the module docstring).
        image_size: Side of the square crop, 112 by default.

    Example:
    >>> alignment_matrix(ARCFACE_TEMPLATE * 2.0)[0, 0].round(6)
    0.5
    """
    return estimate_similarity(landmarks, arcface_template(image_size))


def align_face(image, landmarks, image_size=TEMPLATE_SIZE):
    """Warps the face at ``landmarks`` onto the ArcFace template: InsightFace's ``norm_crop``.

    Bilinear interpolation (OpenCV ``warpAffine``), black outside the photo, channels untouched
    (RGB in, RGB out).

    Args:
        image: ``[H, W, C]`` uint8 (or float) photo.
        landmarks: ``[5, 2]`` landmarks in that photo.
        image_size: Side of the square crop, 112 by default.

    Returns:
        The ``[image_size, image_size, C]`` crop, same dtype as ``image``.

    Example:
    >>> photo = np.zeros((250, 250, 3), np.uint8)
    >>> align_face(photo, ARCFACE_TEMPLATE + 60.0).shape
    (112, 112, 3)
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"Expected an image [H, W, C]. Received: image.shape={image.shape}")
    matrix = alignment_matrix(landmarks, image_size)
    size = _check_image_size(image_size)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return crop.reshape(size, size, image.shape[2])


def transform_points(points, matrix):
    """Applies a ``[2, 3]`` affine matrix to ``[N, 2]`` points.

    Example:
    >>> transform_points([[1.0, 2.0]], np.array([[2.0, 0, 1], [0, 2.0, 0]]))
    array([[3., 4.]])
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _check_points(points, name):
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise ValueError(
            f"Expected {name} of shape [N, 2] with N >= 2. Received: {name}={points!r}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"Expected finite {name}. Received: {name}={array.tolist()}")
    return array


def _check_image_size(image_size):
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"Expected an integer crop size. Received: image_size={image_size!r}")
    if image_size < 16:
        raise ValueError(
            f"Expected a crop size of at least 16 pixels. Received: image_size={image_size}"
        )
    return int(image_size)


def alignment_metadata(image_size=TEMPLATE_SIZE):
    """How input crops must be made, as stored in every exported model's metadata / sidecar.

    An app that feeds the model aligns with this: the five landmark names in order, the
    template points for the model's input size, the estimate and the warp, and the colour order.

    Args:
        image_size: Side of the model's square input, 112.

    Example:
    >>> alignment_metadata()["template"][0]
    [38.2946, 51.6963]
    """
    return {
        "method": "arcface_5_point_similarity",
        "landmarks": list(LANDMARK_NAMES),
        "landmark_order_note": "image-left eye, image-right eye, nose tip, image-left and "
        "image-right mouth corner, (x, y) pixels, pixel centers at integer coordinates",
        "template": [[round(float(v), 4) for v in point] for point in arcface_template(image_size)],
        "template_image_size": int(image_size),
        "transform": "least-squares similarity (4 degrees of freedom, Umeyama) from the "
        "landmarks to the template, as InsightFace's norm_crop",
        "warp": "bilinear (cv2.warpAffine INTER_LINEAR), constant 0 border",
        "color_order": "RGB",
        "detector": "keras_arcface.faces.FaceDetector (YuNet boxes + MTCNN ONet landmarks)",
    }
