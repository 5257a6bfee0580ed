"""The pictures of ``docs/faces.md``: detected landmarks on a photo and the aligned crops.

::

    python -m keras_arcface.faces.figures docs/figures [--photos tests/data/faces]

writes ``faces_landmarks.png`` (the group photo with each face's box and five landmarks) and
``faces_aligned.png`` (the aligned 112x112 crops, with the ArcFace template points drawn on the
first row for comparison).
"""

import argparse
import os

import numpy as np

# Landmark colours (RGB), in LANDMARK_NAMES order: eyes red/blue, nose green, mouth yellow/cyan.
_COLOURS = ((230, 40, 40), (40, 90, 230), (40, 190, 60), (240, 200, 30), (30, 200, 220))


def _draw_faces(photo, faces):
    import cv2

    canvas = photo.copy()
    thickness = max(2, round(max(photo.shape[:2]) / 400))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (255, 255, 255), thickness)
        label = f"{face.score:.2f}"
        cv2.putText(
            canvas,
            label,
            (x1, max(12, y1 - 6)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * thickness,
            (255, 255, 255),
            thickness,
        )
        for (x, y), colour in zip(face.landmarks, _COLOURS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), 2 * thickness, colour, -1)
    return canvas


def _crop_strip(crops, template, scale=2):
    import cv2

    tiles = []
    for crop in crops:
        tile = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        for (x, y), colour in zip(template, _COLOURS):
            center = (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
            cv2.circle(tile, center, 3, colour, 1)
        tiles.append(tile)
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)


def write_figures(out_dir, photos):
    """Writes the two PNGs into ``out_dir`` from the photos in ``photos``; returns their paths."""
    import cv2

    from keras_arcface._io import atomic_write_bytes
    from keras_arcface.faces import ARCFACE_TEMPLATE, FaceDetector, align_face, read_photo

    detector = FaceDetector()
    group = read_photo(os.path.join(photos, "t1.jpg"))
    faces = detector.detect(group)
    drawn = _draw_faces(group, faces)
    drawn = cv2.resize(drawn, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    singles = [read_photo(os.path.join(photos, n)) for n in ("Rob_Lowe_0001.jpg", "rot_0.jpg")]
    crops = [align_face(group, face.landmarks) for face in faces]
    crops += [align_face(p, detector.detect(p)[0].landmarks) for p in singles]
    strip = _crop_strip(crops, ARCFACE_TEMPLATE)
    paths = []
    for name, image in (("faces_landmarks.png", drawn), ("faces_aligned.png", strip)):
        bgr = np.ascontiguousarray(image[..., ::-1])
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {name}")
        paths.append(atomic_write_bytes(os.path.join(out_dir, name), data.tobytes()))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    default = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "faces")
    parser.add_argument("--photos", default=os.path.normpath(default))
    args = parser.parse_args(argv)
    for path in write_figures(args.out_dir, args.photos):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
