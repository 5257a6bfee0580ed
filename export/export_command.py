"""``keras-arcface export``: every format of a model behind the parity gate.

Exit status: 0 when every artifact passed, 1 when the parity gate failed (the failing
artifacts are named), 2 for bad arguments or inputs.
"""

import os
import sys


def _csv(text):
    return tuple(item.strip() for item in text.split(",") if item.strip())


def add_arguments(parser):
    """Adds the ``export`` command's arguments to ``parser``."""
    parser.add_argument(
        "model", metavar="MODEL_OR_RUN", help=".keras embedding model or run folder"
    )
    parser.add_argument(
        "--out", help="export folder (default: RUN/export for a run folder; required otherwise)"
    )
    parser.add_argument(
        "--formats",
        type=_csv,
        default=("saved_model", "tflite", "onnx"),
        help="comma-separated: saved_model,tflite,onnx (default: all)",
    )
    parser.add_argument(
        "--quantize",
        type=_csv,
        default=None,
        help="TFLite variants besides float32: float16,dynamic,int8 (default: all three; "
        "'' for none)",
    )
    parser.add_argument("--data", help="TFRecord dataset folder for calibration and the gate")
    parser.add_argument("--bin", help=".bin pair set: also gate verification accuracy")
    parser.add_argument("--images", nargs="+", help="image files for calibration and the gate")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--parity-images", type=int, default=64, help="images in the gate (64)")
    parser.add_argument(
        "--calibration-images", type=int, default=100, help="int8 calibration images (100)"
    )
    parser.add_argument(
        "--no-gate", action="store_true", help="report parity but exit 0 even if it fails"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="export into a folder that holds other files: its content is moved to "
        "OUT.replaced-TIME (never deleted); a previous export is replaced without it",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="do not export: re-run the gate on the artifacts already in --out",
    )


def _default_out(model, out):
    if out:
        return out
    if os.path.isdir(model) and not os.path.isfile(os.path.join(model, "saved_model.pb")):
        return os.path.join(model, "export")
    raise ValueError(f"--out is required unless MODEL is a run folder. Received: model={model!r}")


def main(args):
    """Runs ``keras-arcface export``; returns the exit status."""
    from keras_arcface.export.exporter import check_export, export_model

    try:
        out = _default_out(args.model, args.out)
        sources = dict(sample_images=args.images, data_dir=args.data, bin_path=args.bin)
        if args.check_only:
            report = check_export(
                args.model, out, num_parity_images=args.parity_images, gate=False, **sources
            )
        else:
            report = export_model(
                args.model,
                out,
                formats=args.formats,
                quantize=args.quantize,
                opset=args.opset,
                num_parity_images=args.parity_images,
                num_calibration_images=args.calibration_images,
                gate=False,
                overwrite=args.overwrite,
                **sources,
            )
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"keras-arcface export: error: {error}", file=sys.stderr)
        return 2
    print(f"\nWrote {out} (parity report: {report.path})")
    if report.passed:
        print("Parity gate: passed for every artifact.")
        return 0
    failed = "; ".join(f"{a.name} ({', '.join(a.reasons)})" for a in report.failed)
    print(f"Parity gate FAILED for: {failed}", file=sys.stderr)
    return 0 if args.no_gate else 1
