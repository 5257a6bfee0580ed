"""Raw photos through ``Embedder`` and the ``embed`` / ``verify`` commands (align="auto")."""

import json
import os

import numpy as np
import pytest

from keras_arcface.faces import FaceDetector, ManyFacesError, NoFaceError, align_face, read_photo
from keras_arcface.inference import Embedder

DATA = os.path.join(os.path.dirname(__file__), "data", "faces")
ROB, ROB_2, GROUP = (
    os.path.join(DATA, n) for n in ("Rob_Lowe_0001.jpg", "Rob_Lowe_0002.jpg", "t1.jpg")
)
NO_FACE, CROP = os.path.join(DATA, "no_face.png"), os.path.join(DATA, "Tom_Hanks_54745.png")


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((112, 112, 3), name="images"),
            keras.layers.Rescaling(1.0 / 127.5, offset=-1.0),
            keras.layers.Conv2D(8, 5, strides=4, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(16),
        ]
    )
    path = tmp_path_factory.mktemp("model") / "embedding.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def embedder(model_path, detector):
    return Embedder.load(model_path, detector=detector)


def test_aligned_crop_passes_through_untouched(embedder):
    crop = read_photo(CROP)
    np.testing.assert_array_equal(embedder.embed(CROP), embedder.embed(crop, align=False))


def test_raw_photo_is_detected_and_aligned(embedder, detector):
    photo = read_photo(ROB)
    expected = embedder.embed(align_face(photo, detector.detect(photo)[0].landmarks), align=False)
    np.testing.assert_allclose(embedder.embed(ROB), expected, atol=1e-6)
    np.testing.assert_allclose(embedder.embed(photo), expected, atol=1e-6)
    # Without alignment the photo is only resized: a different input, a different embedding.
    with pytest.warns(UserWarning, match="Resized"):
        resized = embedder.embed(ROB, align=False)
    assert np.abs(resized - expected).max() > 1e-3
    # align=True aligns even a 112x112 image.
    forced = embedder.embed(CROP, align=True)
    assert forced.shape == (1, 16) and np.abs(forced - embedder.embed(CROP)).max() > 1e-4


def test_group_photo_gives_one_embedding_per_face(embedder):
    faces = embedder.embed_faces(GROUP)
    assert len(faces) >= 5
    for face in faces:
        assert face["embedding"].shape == (16,)
        assert len(face["box"]) == 4 and set(face["landmarks"]) >= {"left_eye", "mouth_right"}
    assert embedder.embed_faces(NO_FACE) == []
    assert embedder.embed(GROUP, face="largest").shape == (1, 16)


def test_verify_needs_exactly_one_face_without_a_choice(embedder):
    with pytest.raises(NoFaceError, match="No face found in .*no_face.png"):
        embedder.verify(NO_FACE, ROB)
    with pytest.raises(ManyFacesError, match=r"Found \d faces in .*t1.jpg"):
        embedder.verify(GROUP, ROB)
    similarity, _ = embedder.verify(ROB, ROB_2)
    assert -1.0 <= similarity <= 1.0
    assert isinstance(embedder.verify(GROUP, ROB, face="largest")[0], float)
    with pytest.raises(ValueError, match="Received: align="):
        embedder.embed(ROB, align="sometimes")


@pytest.mark.slow
def test_embed_and_verify_commands(model_path, tmp_path, capsys):
    from keras_arcface.cli import main

    out = tmp_path / "faces.json"
    assert main(["embed", model_path, GROUP, CROP, "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    group = [face for face in payload["faces"] if face["image"] == GROUP]
    assert len(group) >= 5 and all(len(face["embedding"]) == 16 for face in group)
    assert [face["box"] for face in payload["faces"] if face["image"] == CROP] == [None]
    assert main(["embed", model_path, NO_FACE]) == 1
    assert "no face found" in capsys.readouterr().out
    assert main(["verify", model_path, ROB, ROB_2]) == 0
    assert "similarity" in capsys.readouterr().out
    assert main(["verify", model_path, GROUP, ROB]) == 2
    assert "faces in" in capsys.readouterr().err
    assert main(["verify", model_path, GROUP, ROB, "--face", "largest"]) == 0
