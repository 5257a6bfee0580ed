"""Which face detector: the candidates whose weights ship in PyPI wheels, on the same real photos.

Candidates: ``mtcnn`` 1.0.0 as shipped (its own three-stage cascade, float landmarks), ``yuface``
(YuNet, whole-pixel landmarks) and keras-arcface's default, YuNet boxes + ONet landmark refinement
(``keras_arcface.faces.FaceDetector``). On the photos of ``--photos`` (``/work/shared/photos`` or
a copy) it measures, per detector:

- faces found on each photo;
- rotation consistency: the photo ``rot_0`` and its exact 90/180/270-degree rotations (JPEG
  lossless rotations: the pixels are the same); landmarks found on a rotated copy, mapped back to
  ``rot_0``'s frame, against ``rot_0``'s landmarks (mean point distance in pixels); "-" where
  the face was not found;
- scale consistency: the photo shrunk to 0.8x and enlarged to 1.25x; landmarks mapped back,
  against the full-size ones: mean point distance over the inter-ocular distance (NME),
  median over the single-face photos; a whole-pixel detector cannot go far below 1 / IOD;
- milliseconds per photo (median of ``--repeats`` calls after one warm-up) on a 250x250 LFW photo
  and on a 640x480 photo.

Usage:
    python benchmarks/detectors.py [--photos /work/shared/photos] [--repeats 10]

Prints a markdown table and writes benchmarks/results/detectors.json.
"""

import argparse
import datetime
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import machine_info, write_json  # noqa: E402

SINGLE_FACE = (
    "Rob_Lowe_0001.jpg",
    "Rob_Lowe_0002.jpg",
    "Nathalie_Baye_0002.jpg",
    "rot_0.jpg",
    "blur.jpg",
    "left_face.jpeg",
    "lower_face.jpeg",
    "rise_face.jpeg",
)
ALL_PHOTOS = SINGLE_FACE + (
    "rot_90.jpg",
    "rot_180.jpg",
    "rot_270.jpg",
    "mask_white.jpg",
    "t1.jpg",
    "Tom_Hanks_54745.png",
    "no_face.png",
)


class MtcnnAsShipped:
    """The ``mtcnn`` package's own cascade (PNet, RNet, ONet), float landmarks."""

    def __init__(self):
        from mtcnn import MTCNN

        self.model = MTCNN()

    def detect(self, image):
        rows = self.model.detect_faces(image, output_type="numpy", box_format="xyxy")
        faces = []
        for row in np.asarray(rows).reshape(-1, 16):
            landmarks = np.stack([row[6:11], row[11:16]], axis=1).astype(np.float64)
            faces.append((float(row[5]), landmarks))
        return sorted(faces, key=lambda face: -face[0])


class Wrapped:
    """A keras-arcface detector as (score, landmarks) pairs."""

    def __init__(self, detector):
        self.detector = detector

    def detect(self, image):
        return [(face.score, face.landmarks) for face in self.detector.detect(image)]


def read(photos, name):
    from keras_arcface.faces import read_photo

    return read_photo(os.path.join(photos, name))


def rotate_back(points, degrees, height, width):
    """Points of ``np.rot90(image, -degrees // 90)`` (clockwise) mapped to the unrotated image."""
    x, y = points[:, 0], points[:, 1]
    if degrees == 90:
        return np.stack([y, (height - 1) - x], axis=1)
    if degrees == 180:
        return np.stack([(width - 1) - x, (height - 1) - y], axis=1)
    if degrees == 270:
        return np.stack([(width - 1) - y, x], axis=1)
    return points


def rotation_errors(detector, photos):
    base = read(photos, "rot_0.jpg")
    height, width = base.shape[:2]
    reference = detector.detect(base)[0][1]
    errors = {}
    for degrees in (90, 180, 270):
        rotated = read(photos, f"rot_{degrees}.jpg")
        # The copies are exact lossless rotations (checked here, not assumed).
        exact = np.array_equal(np.rot90(base, -degrees // 90), rotated)
        faces = detector.detect(rotated)
        if not faces:
            errors[degrees] = None
            continue
        points = rotate_back(faces[0][1], degrees, height, width)
        errors[degrees] = float(np.linalg.norm(points - reference, axis=1).mean())
        errors[f"{degrees}_exact_rotation"] = bool(exact)
    return errors


def scale_errors(detector, photos):
    import cv2

    errors = []
    for name in SINGLE_FACE:
        image = read(photos, name)
        faces = detector.detect(image)
        if not faces:
            continue
        reference = faces[0][1]
        inter_ocular = np.linalg.norm(reference[1] - reference[0])
        for factor in (0.8, 1.25):
            interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            scaled = cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)
            found = detector.detect(scaled)
            if not found:
                continue
            sx, sy = scaled.shape[1] / image.shape[1], scaled.shape[0] / image.shape[0]
            points = found[0][1]
            points = np.stack([(points[:, 0] + 0.5) / sx - 0.5, (points[:, 1] + 0.5) / sy - 0.5], 1)
            errors.append(float(np.linalg.norm(points - reference, axis=1).mean() / inter_ocular))
    return errors


def milliseconds(detector, image, repeats):
    detector.detect(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(image)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def photo_640x480(photos):
    import cv2

    image = read(photos, "lower_face.jpeg")  # 640x633, one face
    return np.ascontiguousarray(cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA))


def measure(name, detector, photos, repeats):
    found = {photo: len(detector.detect(read(photos, photo))) for photo in ALL_PHOTOS}
    scale = scale_errors(detector, photos)
    return {
        "detector": name,
        "faces_found": found,
        "rotation_error_px": rotation_errors(detector, photos),
        "scale_nme_median": statistics.median(scale) if scale else None,
        "scale_nme_max": max(scale) if scale else None,
        "ms_250x250": milliseconds(detector, read(photos, "Rob_Lowe_0001.jpg"), repeats),
        "ms_640x480": milliseconds(detector, photo_640x480(photos), repeats),
    }


def _cell(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows):
    print(
        "| detector | faces (t1 group) | rot_0 / 90 / 180 / 270 found | rot error px 90/180/270 "
        "| scale NME median (max) | ms 250x250 | ms 640x480 |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        found = row["faces_found"]
        rotations = "/".join(str(found[f"rot_{d}.jpg"]) for d in (0, 90, 180, 270))
        errors = row["rotation_error_px"]
        print(
            f"| {row['detector']} | {found['t1.jpg']} | {rotations} | "
            f"{'/'.join(_cell(errors.get(d), 1) for d in (90, 180, 270))} | "
            f"{_cell(row['scale_nme_median'], 4)} ({_cell(row['scale_nme_max'], 4)}) | "
            f"{row['ms_250x250']:.1f} | {row['ms_640x480']:.1f} |"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="/work/shared/photos")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/detectors.json")
    args = parser.parse_args(argv)

    from keras_arcface.faces import FaceDetector, YuNetDetector

    candidates = {
        "mtcnn 1.0.0 as shipped": MtcnnAsShipped,
        "yuface (YuNet)": lambda: Wrapped(YuNetDetector()),
        "YuNet + ONet refinement (default)": lambda: Wrapped(FaceDetector()),
    }
    rows = [measure(name, build(), args.photos, args.repeats) for name, build in candidates.items()]
    print_table(rows)
    import mtcnn
    import yuface

    payload = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/detectors.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(
            mtcnn=getattr(mtcnn, "__version__", "1.0.0"),
            yuface=getattr(yuface, "__version__", "2023.5.1"),
        ),
        "rows": rows,
    }
    write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
