"""Detection and alignment speed: one photo, a folder, and the alignment step beside norm_crop.

Three measurements, in one run:

1. Detection + alignment of one 640x480 photo (one face): median milliseconds of
   ``FaceDetector.detect`` + ``align_face`` over ``--repeats`` calls after a warm-up, with the
   YuNet stage, the ONet stage and the warp timed separately. Target: <= 50 ms on 2 cores.
2. ``keras-arcface align`` (``align_folder``) over a folder of ``--folder-photos`` LFW-sized
   (250x250) JPEGs, made from the LFW photos by flips and shifts: photos per second with one
   process and with one process per core, start-up included.
3. The alignment step alone on the same landmarks: keras-arcface's ``align_face`` (its own
   least-squares estimate + ``cv2.warpAffine``) beside InsightFace's ``norm_crop`` procedure
   (``skimage.transform.SimilarityTransform`` estimate + ``cv2.warpAffine``): median
   microseconds per crop and their ratio.

The load average is recorded: the machine is shared, so only the ratios measured side by side
are robust.

Usage:
    python benchmarks/alignment.py [--photos /work/shared/photos] [--repeats 30]
        [--folder-photos 200]

Prints a markdown table and writes benchmarks/results/alignment.json.
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import machine_info, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_PHOTOS = os.path.join(HERE, "..", "tests", "data", "faces")


def _median_ms(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def photo_640x480(photos):
    import cv2

    from keras_arcface.faces import read_photo

    path = os.path.join(photos, "lower_face.jpeg")
    if not os.path.isfile(path):
        path = os.path.join(TEST_PHOTOS, "rot_0.jpg")
    return np.ascontiguousarray(
        cv2.resize(read_photo(path), (640, 480), interpolation=cv2.INTER_AREA)
    )


def one_photo(photos, repeats):
    from keras_arcface.faces import FaceDetector, align_face

    detector = FaceDetector()
    image = photo_640x480(photos)
    faces = detector.detect(image)
    coarse = detector.coarse.detect(image)

    def full():
        found = detector.detect(image)
        return [align_face(image, face.landmarks) for face in found]

    return {
        "faces": len(faces),
        "detect_align_ms": _median_ms(full, repeats),
        "yunet_ms": _median_ms(lambda: detector.coarse.detect(image), repeats),
        "onet_ms": _median_ms(lambda: detector.refiner.refine(image, coarse), repeats),
        "warp_ms": _median_ms(lambda: align_face(image, faces[0].landmarks), repeats),
    }


def make_folder(root, count, seed=0):
    """``count`` 250x250 JPEGs in 3 identity folders: LFW photos flipped and shifted."""
    import cv2

    from keras_arcface.faces import read_photo

    rng = np.random.default_rng(seed)
    names = ("Rob_Lowe_0001.jpg", "Rob_Lowe_0002.jpg", "Nathalie_Baye_0002.jpg")
    sources = [read_photo(os.path.join(TEST_PHOTOS, name)) for name in names]
    for index in range(count):
        image = sources[index % len(sources)]
        dx, dy = rng.integers(-12, 13, size=2)
        shifted = np.roll(image, (int(dy), int(dx)), axis=(0, 1))
        if index % 2:
            shifted = shifted[:, ::-1]
        folder = os.path.join(root, f"person_{index % len(sources)}")
        os.makedirs(folder, exist_ok=True)
        bgr = np.ascontiguousarray(shifted[..., ::-1])
        cv2.imwrite(os.path.join(folder, f"{index:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])


def folder(count):
    from keras_arcface.faces.align_folder import align_folder

    results = {}
    with tempfile.TemporaryDirectory() as root:
        make_folder(os.path.join(root, "raw"), count)
        for workers in (1, os.cpu_count() or 1):
            out = os.path.join(root, f"out_{workers}")
            start = time.perf_counter()
            summary = align_folder(os.path.join(root, "raw"), out, workers=workers, progress=False)
            seconds = time.perf_counter() - start
            results[f"workers_{workers}"] = {
                "photos": count,
                "crops": summary["crops"],
                "seconds": seconds,
                "photos_per_s": count / seconds,
            }
    return results


def alignment_step(photos, repeats):
    import cv2

    from keras_arcface.faces import ARCFACE_TEMPLATE, FaceDetector, align_face

    try:
        from skimage.transform import SimilarityTransform
    except ImportError:
        return None
    image = photo_640x480(photos)
    landmarks = FaceDetector().detect(image)[0].landmarks

    def norm_crop():
        transform = SimilarityTransform()
        transform.estimate(landmarks, ARCFACE_TEMPLATE)  # InsightFace's exact call
        return cv2.warpAffine(image, transform.params[0:2, :], (112, 112), borderValue=0.0)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-image 0.26 deprecates estimate
        ours = _median_ms(lambda: align_face(image, landmarks), repeats * 10) * 1000.0
        theirs = _median_ms(norm_crop, repeats * 10) * 1000.0
        difference = np.abs(
            align_face(image, landmarks).astype(float) - norm_crop().astype(float)
        ).mean()
    return {
        "align_face_us": ours,
        "norm_crop_us": theirs,
        "ratio_norm_crop_over_ours": theirs / ours,
        "crop_mean_abs_difference": float(difference),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="/work/shared/photos")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--folder-photos", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/alignment.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    single = one_photo(args.photos, args.repeats)
    step = alignment_step(args.photos, args.repeats)
    many = folder(args.folder_photos)
    print_table(single, step, many)
    payload = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/alignment.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(),
        "load_average_before": [round(v, 2) for v in load_before],
        "one_photo_640x480": single,
        "alignment_step": step,
        "align_folder": many,
    }
    write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


def print_table(single, step, many):
    print(f"load average (1/5/15 min): {' / '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| measurement | value |\n|---|---|")
    print(f"| detect + align, one 640x480 photo (median ms) | {single['detect_align_ms']:.1f} |")
    print(
        f"| of which YuNet / ONet / warp (median ms) | {single['yunet_ms']:.1f} / "
        f"{single['onet_ms']:.1f} / {single['warp_ms']:.2f} |"
    )
    for key, row in many.items():
        print(
            f"| align folder, {row['photos']} LFW-sized photos, {key.replace('_', ' ')} "
            f"(photos/s) | {row['photos_per_s']:.1f} |"
        )
    if step:
        print(f"| align_face alone (median us) | {step['align_face_us']:.0f} |")
        print(f"| InsightFace norm_crop procedure (median us) | {step['norm_crop_us']:.0f} |")
        print(f"| ratio norm_crop / align_face | {step['ratio_norm_crop_over_ours']:.2f} |")
        print(
            f"| crop mean abs difference (grey levels) | {step['crop_mean_abs_difference']:.3f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
