"""The parity gate: every exported artifact must embed like the Keras model it came from.

Each artifact runs in its own runtime (TensorFlow, LiteRT, onnxruntime) on the same sample of
real images as the Keras model; the gate requires a minimum cosine similarity between the two
embeddings of every image (``COSINE_GATES``) and, when a ``.bin`` pair set is given,
verification accuracy within ``ACCURACY_TOLERANCE_POINTS`` of the Keras model's under the
reference protocol (10 folds, flip fusion).
"""

import dataclasses
import os

import numpy as np

from keras_arcface._math import l2_normalize
from keras_arcface.inference.contract import write_json_atomic

COSINE_GATES = {"float32": 0.9999, "float16": 0.999, "dynamic": 0.98, "int8": 0.98}
ACCURACY_TOLERANCE_POINTS = 0.5


class ParityGateError(RuntimeError):
    """Raised when an exported artifact fails the parity gate; holds the ``report``."""

    def __init__(self, report):
        self.report = report
        super().__init__(
            "Parity gate failed for: "
            + "; ".join(f"{r.name} ({', '.join(r.reasons)})" for r in report.failed)
            + f". Report: {report.path or '(not written)'}"
        )


@dataclasses.dataclass
class ArtifactParity:
    """How one artifact compares with the Keras model.

    Args:
        name: Artifact name (``saved_model``, ``tflite_int8``, ``onnx`` ...).
        path: Where it was written.
        format: ``saved_model``, ``tflite`` or ``onnx``.
        precision: ``float32``, ``float16``, ``dynamic`` or ``int8`` (selects the gate).
        min_cosine: Smallest cosine similarity with the Keras embedding over the sample.
        mean_cosine: Mean cosine similarity.
        cosine_gate: The required minimum.
        accuracy: Verification accuracy on the ``.bin`` (``None`` without one).
        accuracy_delta_points: ``100 * |accuracy - keras_accuracy|``.
        passed: Whether every gate passed.
        reasons: Why it failed (empty when it passed).

    Example:
    >>> report.artifacts[0].min_cosine  # doctest: +SKIP
    0.99999994
    """

    name: str
    path: str
    format: str
    precision: str
    min_cosine: float
    mean_cosine: float
    cosine_gate: float
    accuracy: float | None = None
    accuracy_delta_points: float | None = None
    passed: bool = True
    reasons: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ParityReport:
    """The parity gate's result over every artifact of one export.

    Args:
        artifacts: One :class:`ArtifactParity` per artifact.
        num_images: Images in the cosine sample.
        image_source: Where the sample came from.
        keras_accuracy: The Keras model's verification accuracy (``None`` without a ``.bin``).
        bin_path: The ``.bin`` used, if any.
        path: Where ``parity_report.json`` was written, if it was.

    Example:
    >>> print(report.format_table())  # doctest: +SKIP
    """

    artifacts: list
    num_images: int
    image_source: str
    keras_accuracy: float | None = None
    bin_path: str | None = None
    path: str | None = None

    @property
    def passed(self):
        """True when every artifact passed."""
        return all(a.passed for a in self.artifacts)

    @property
    def failed(self):
        """The artifacts that failed."""
        return [a for a in self.artifacts if not a.passed]

    def to_dict(self):
        """A JSON-serialisable dict (what ``parity_report.json`` holds)."""
        return {
            "passed": self.passed,
            "failed": [a.name for a in self.failed],
            "num_images": self.num_images,
            "image_source": self.image_source,
            "keras_accuracy": self.keras_accuracy,
            "bin_path": self.bin_path,
            "cosine_gates": dict(COSINE_GATES),
            "accuracy_tolerance_points": ACCURACY_TOLERANCE_POINTS,
            "artifacts": [dataclasses.asdict(a) for a in self.artifacts],
        }

    def format_table(self):
        """The report as a markdown table."""
        lines = [
            "| artifact | precision | min cosine | mean cosine | gate | accuracy | delta (pts) "
            "| result |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in self.artifacts:
            accuracy = "-" if a.accuracy is None else f"{100 * a.accuracy:.2f}%"
            delta = "-" if a.accuracy_delta_points is None else f"{a.accuracy_delta_points:.2f}"
            result = "pass" if a.passed else "FAIL: " + ", ".join(a.reasons)
            lines.append(
                f"| {a.name} | {a.precision} | {a.min_cosine:.6f} | {a.mean_cosine:.6f} | "
                f">= {a.cosine_gate} | {accuracy} | {delta} | {result} |"
            )
        keras = "-" if self.keras_accuracy is None else f"{100 * self.keras_accuracy:.2f}%"
        lines.append(
            f"\nKeras reference: {self.num_images} images from {self.image_source}; "
            f"verification accuracy {keras}"
            + (f" on {os.path.basename(self.bin_path)}" if self.bin_path else "")
        )
        return "\n".join(lines)

    def write(self, path):
        """Writes the report as JSON (atomically) and remembers ``path``."""
        self.path = os.fspath(path)
        write_json_atomic(self.path, self.to_dict())
        return self.path


def verification_accuracy(embedder, pair_set, *, progress=False, description="embedding"):
    """Verification accuracy of ``embedder`` on a pair set, reference protocol with flip.

    Args:
        embedder: Anything with ``embed(images) -> [B, D]`` (an ``Embedder``).
        pair_set: ``(images [2N, S, S, 3], issame [N])`` or a ``VerificationSet``.
        progress: Show a progress bar.
        description: Progress-bar label.

    Returns:
        ``keras_arcface.evaluation.evaluate_verification``'s result dict.

    Example:
    >>> verification_accuracy(embedder, load_bin("lfw.bin"))["accuracy"]  # doctest: +SKIP
    """
    from keras_arcface.evaluation import evaluate_verification

    images, issame = getattr(pair_set, "images", None), getattr(pair_set, "issame", None)
    if images is None:
        images, issame = pair_set
    return evaluate_verification(
        embedder.embed, images, issame, progress=progress, description=description
    )


def cosine_parity(reference, candidate):
    """Row-wise cosine similarity of two embedding matrices (float64).

    Example:
    >>> cosine_parity(np.eye(2), np.eye(2)).tolist()
    [1.0, 1.0]
    """
    a, b = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"Expected embeddings of equal shape. Received: shapes={a.shape} and {b.shape}"
        )
    return np.sum(l2_normalize(a, axis=1) * l2_normalize(b, axis=1), axis=1)


def _check_artifact(artifact, expected, images, pair_set, keras_accuracy, progress):
    """Gates one ``(name, path, precision)`` artifact: cosine, then accuracy when given pairs."""
    from keras_arcface.inference import Embedder

    name, path, precision = artifact
    if precision not in COSINE_GATES:
        raise ValueError(
            f"Expected a precision in {list(COSINE_GATES)}. Received: precision={precision!r}"
        )
    embedder = Embedder.load(path)
    cosines = cosine_parity(expected, embedder.embed(images))
    result = ArtifactParity(
        name=name,
        path=os.fspath(path),
        format=embedder.format,
        precision=precision,
        min_cosine=float(np.min(cosines)),
        mean_cosine=float(np.mean(cosines)),
        cosine_gate=COSINE_GATES[precision],
    )
    if not result.min_cosine >= result.cosine_gate:
        result.reasons.append(f"min cosine {result.min_cosine:.6f} < {result.cosine_gate}")
    if pair_set is not None:
        accuracy = verification_accuracy(embedder, pair_set, progress=progress, description=name)
        result.accuracy = float(accuracy["accuracy"])
        result.accuracy_delta_points = float(100 * abs(result.accuracy - keras_accuracy))
        if result.accuracy_delta_points > ACCURACY_TOLERANCE_POINTS:
            result.reasons.append(
                f"accuracy {100 * result.accuracy:.2f}% vs Keras {100 * keras_accuracy:.2f}%"
            )
    result.passed = not result.reasons
    return result


def check_parity(
    reference,
    artifacts,
    images,
    *,
    image_source="given images",
    pair_set=None,
    bin_path=None,
    keras_accuracy=None,
    progress=False,
):
    """Runs the parity gate on exported artifacts.

    Args:
        reference: The Keras model's ``Embedder`` (``Embedder.from_model(model)``).
        artifacts: ``(name, path, precision)`` tuples; each path is opened with
            ``Embedder.load`` (its own runtime).
        images: Sample ``[N, S, S, 3]`` RGB 0..255 for the cosine gate.
        image_source: A description of the sample, for the report.
        pair_set: ``(images, issame)`` or a ``VerificationSet`` for the accuracy gate.
        bin_path: Where ``pair_set`` came from, for the report.
        keras_accuracy: The reference's accuracy on ``pair_set`` if already known.
        progress: Show progress bars.

    Returns:
        A :class:`ParityReport` (not written; see ``ParityReport.write``).

    Example:
    >>> report = check_parity(Embedder.from_model(model), [("onnx", "m.onnx", "float32")],
    ...                       images)  # doctest: +SKIP
    """
    images = np.asarray(images, np.float32)
    expected = reference.embed(images)
    if pair_set is not None and keras_accuracy is None:
        keras_accuracy = verification_accuracy(reference, pair_set, progress=progress)["accuracy"]
    results = [
        _check_artifact(artifact, expected, images, pair_set, keras_accuracy, progress)
        for artifact in artifacts
    ]
    return ParityReport(
        artifacts=results,
        num_images=int(images.shape[0]),
        image_source=image_source,
        keras_accuracy=None if keras_accuracy is None else float(keras_accuracy),
        bin_path=None if bin_path is None else os.fspath(bin_path),
    )
