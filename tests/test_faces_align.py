"""ArcFace alignment against independent oracles.

The matrix is checked against scikit-image's ``SimilarityTransform.estimate`` (Umeyama, what
InsightFace's ``norm_crop`` calls) and the crop against a float64 NumPy bilinear loop; the code
under test uses neither (it solves its own least squares and warps with OpenCV).
"""

import os

import numpy as np
import pytest

from keras_arcface.faces.align import (
    ARCFACE_TEMPLATE,
    align_face,
    alignment_matrix,
    arcface_template,
    estimate_similarity,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "faces")


def _photo():
    from PIL import Image

    with Image.open(os.path.join(DATA, "Rob_Lowe_0001.jpg")) as image:
        return np.asarray(image.convert("RGB"))


def _random_landmarks(rng):
    """The template moved by a random similarity, plus a few pixels of noise per point."""
    angle = rng.uniform(-0.6, 0.6)
    scale = rng.uniform(0.8, 2.2)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.uniform(-20.0, 60.0, size=2)
    return ARCFACE_TEMPLATE @ rotation.T + shift + rng.normal(0.0, 2.0, size=(5, 2))


def _skimage_matrix(landmarks, template):
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        transform = SimilarityTransform.from_estimate(landmarks, template)
        assert transform
    else:
        transform = SimilarityTransform()
        assert transform.estimate(landmarks, template)
    return transform.params[:2]


def _bilinear_loop(image, matrix, size):
    """Inverse-maps each output pixel and samples bilinearly; pixels outside the photo are 0."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)
    image = image.astype(np.float64)
    height, width = image.shape[:2]
    out = np.zeros((size, size, image.shape[2]))

    def pixel(row, col):
        if 0 <= row < height and 0 <= col < width:
            return image[row, col]
        return np.zeros(image.shape[2])

    for v in range(size):
        for u in range(size):
            x, y, _ = inverse @ np.array([u, v, 1.0])
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            fx, fy = x - x0, y - y0
            out[v, u] = (
                (1 - fx) * (1 - fy) * pixel(y0, x0)
                + fx * (1 - fy) * pixel(y0, x0 + 1)
                + (1 - fx) * fy * pixel(y0 + 1, x0)
                + fx * fy * pixel(y0 + 1, x0 + 1)
            )
    return out


def test_template_sizes_follow_insightface_rule():
    np.testing.assert_allclose(arcface_template(112), ARCFACE_TEMPLATE)
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE * 2.0)
    # Not a multiple of 112: scale by S / 128, shift x by 8 * S / 128 (hand-worked for S=128, 96).
    np.testing.assert_allclose(arcface_template(128), ARCFACE_TEMPLATE + [8.0, 0.0])
    expected_96 = ARCFACE_TEMPLATE * 0.75 + [6.0, 0.0]
    np.testing.assert_allclose(arcface_template(96), expected_96)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [112, 224, 128])
def test_matrix_matches_scikit_image(seed, size):
    landmarks = _random_landmarks(np.random.default_rng(seed))
    expected = _skimage_matrix(landmarks, arcface_template(size))
    np.testing.assert_allclose(alignment_matrix(landmarks, size), expected, atol=1e-5)


def test_matrix_recovers_a_known_similarity():
    # Hand-made: template = 0.5 * R(90 deg) @ p + (10, 20), so the estimate must be exact.
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [7.0, 3.0], [2.0, 9.0]])
    target = points @ (0.5 * np.array([[0.0, -1.0], [1.0, 0.0]])).T + [10.0, 20.0]
    np.testing.assert_allclose(
        estimate_similarity(points, target), [[0.0, -0.5, 10.0], [0.5, 0.0, 20.0]], atol=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_crop_matches_numpy_bilinear_oracle(seed):
    photo = _photo()
    landmarks = _random_landmarks(np.random.default_rng(seed)) + 40.0
    matrix = _skimage_matrix(landmarks, ARCFACE_TEMPLATE)
    expected = _bilinear_loop(photo, matrix, 112)
    crop = align_face(photo, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    difference = np.abs(crop.astype(np.float64) - expected)
    assert difference.mean() < 1.0, difference.mean()
    # Channel order is untouched (RGB in, RGB out): swapping channels would break this.
    assert np.abs(crop[..., ::-1].astype(np.float64) - expected).mean() > 5.0


def test_aligned_template_points_land_on_the_template():
    # A synthetic photo with five dots at known positions: after alignment the dots sit on the
    # template (the matrix maps the landmarks there, the warp carries the pixels with it).
    landmarks = ARCFACE_TEMPLATE * 1.7 + [31.0, 17.0]
    photo = np.zeros((260, 260, 3), np.uint8)
    for x, y in np.round(landmarks).astype(int):
        photo[y - 2 : y + 3, x - 2 : x + 3] = 255
    crop = align_face(photo, np.round(landmarks))
    for x, y in np.round(ARCFACE_TEMPLATE).astype(int):
        assert crop[y, x].min() > 100


@pytest.mark.parametrize(
    "landmarks, error",
    [
        (np.zeros((5, 3)), ValueError),
        (np.full((5, 2), np.nan), ValueError),
        (np.ones((5, 2)), ValueError),  # all points coincide
    ],
)
def test_bad_landmarks_are_refused(landmarks, error):
    with pytest.raises(error, match="Received"):
        alignment_matrix(landmarks)


def test_bad_sizes_are_refused():
    with pytest.raises(TypeError, match="Received: image_size"):
        arcface_template(112.0)
    with pytest.raises(ValueError, match="Received: image_size"):
        arcface_template(8)


def test_exports_carry_the_alignment_contract():
    from keras_arcface.faces.align import alignment_metadata
    from keras_arcface.inference.contract import contract_metadata

    metadata = contract_metadata(512)["alignment"]
    assert metadata == alignment_metadata(112)
    np.testing.assert_allclose(metadata["template"], ARCFACE_TEMPLATE, atol=1e-4)
    assert metadata["landmarks"][0] == "left_eye" and metadata["color_order"] == "RGB"
    np.testing.assert_allclose(alignment_metadata(224)["template"], ARCFACE_TEMPLATE * 2, atol=1e-4)
