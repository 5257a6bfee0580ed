"""The paper's analysis figures: target-logit curves and binary decision margins.

Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition"
(arXiv 1801.07698), section 2.2, Figure 4(b) (target logit curves) and Table 1 /
Figure 5 (decision margins of the binary case). Every number drawn here comes from
the package's own margin functions (``keras_arcface.losses.get(name).logits``), so
the figures show what the library computes, not a re-derivation of the formulas.
"""

import dataclasses
import os

import numpy as np

from keras_arcface._deprecation import renamed_function
from keras_arcface.paper._io import atomic_save_figure, require_matplotlib


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """One loss of the paper's comparison, as the package builds it.

    Args:
        label: the name shown in figures and tables, e.g. ``"ArcFace (m=0.5)"``.
        name: the identifier given to ``keras_arcface.losses.get``.
        params: keyword arguments for ``keras_arcface.losses.get`` (margins in radians).
    """

    label: str
    name: str
    params: tuple = ()

    def build(self, **overrides):
        """Returns the package's loss object for this spec."""
        from keras_arcface import losses

        params = dict(self.params)
        params.update(overrides)
        return losses.get(self.name, **params)


# Figure 4(b) of the paper. The hyper-parameters are the paper's; margins in radians.
CURVE_LOSSES = (
    LossSpec("Softmax", "softmax"),
    LossSpec("SphereFace (m=1.35)", "sphereface", (("margin", 1.35),)),
    LossSpec("ArcFace (m=0.5)", "arcface", (("margin", 0.5),)),
    LossSpec("CosFace (m=0.35)", "cosface", (("margin", 0.35),)),
    LossSpec("CM1 (1, 0.3, 0.2)", "cm1"),
    LossSpec("CM2 (0.9, 0.4, 0.15)", "cm2"),
)

# Table 1 of the paper lists these; CM1 and CM2 are added for completeness.
MARGIN_LOSSES = (
    LossSpec("Softmax", "softmax"),
    LossSpec("Norm-Softmax", "norm_softmax"),
    LossSpec("SphereFace (m=1.35)", "sphereface", (("margin", 1.35),)),
    LossSpec("CosFace (m=0.35)", "cosface", (("margin", 0.35),)),
    LossSpec("ArcFace (m=0.5)", "arcface", (("margin", 0.5),)),
    LossSpec("CM1 (1, 0.3, 0.2)", "cm1"),
    LossSpec("CM2 (0.9, 0.4, 0.15)", "cm2"),
)


def _theta_grid(theta_degrees):
    if theta_degrees is None:
        return np.linspace(0.0, 180.0, 721)
    theta = np.asarray(theta_degrees, dtype=np.float64).reshape(-1)
    if theta.size == 0 or np.any(theta < 0.0) or np.any(theta > 180.0):
        raise ValueError(
            "theta_degrees must be a non-empty list of angles in [0, 180] degrees. "
            f"Received: theta_degrees={theta_degrees!r}"
        )
    return theta


def loss_scale(loss):
    """The scale ``s`` a loss multiplies cosines by (1.0 for losses without one)."""
    scale = getattr(loss, "scale", None)
    return 1.0 if scale is None else float(scale)


def normalized_target_logit(loss, theta_degrees):
    """The target logit of ``loss`` divided by its scale, at the given angles.

    The package's ``loss.logits(labels, cosine)`` is evaluated on a batch where every
    sample's target class sits at angle ``theta`` from the sample, so the curve is
    exactly what training feeds to the cross-entropy, divided by ``s`` so that losses
    with different scales share one axis (Softmax and Norm-Softmax give ``cos(theta)``).

    Args:
        loss: a loss object from ``keras_arcface.losses.get``.
        theta_degrees: angles in degrees, any shape; returned with the same shape.

    Returns:
        float64 NumPy array of normalized target logits.

    Example:
        >>> from keras_arcface import losses
        >>> normalized_target_logit(losses.get("arcface"), [0.0])  # cos(0.5)
        array([0.87758...])
    """
    import keras

    theta = np.asarray(theta_degrees, dtype=np.float64)
    cosine = np.cos(np.radians(theta.reshape(-1))).astype(np.float32)
    # Column 0 is the target class; column 1 a non-target class at the same angle.
    batch = np.stack([cosine, cosine], axis=1)
    labels = np.zeros((batch.shape[0],), dtype=np.int32)
    logits = keras.ops.convert_to_numpy(loss.logits(labels, batch))
    return (logits[:, 0].astype(np.float64) / loss_scale(loss)).reshape(theta.shape)


normalised_target_logit = renamed_function(normalized_target_logit, "normalised_target_logit")


def target_logit_curves(theta_degrees=None, specs=CURVE_LOSSES):
    """Computes the paper's Figure 4(b): normalized target logit against the angle.

    Args:
        theta_degrees: angles in [0, 180] degrees; default 721 points from 0 to 180.
        specs: the losses to draw, as `LossSpec`s; default the paper's six.

    Returns:
        ``(theta_degrees, {label: curve})`` with float64 arrays.

    Example:
        >>> theta, curves = target_logit_curves([0.0, 90.0])
        >>> curves["CosFace (m=0.35)"]  # cos(theta) - 0.35
        array([ 0.65, -0.35])
    """
    theta = _theta_grid(theta_degrees)
    return theta, {spec.label: normalized_target_logit(spec.build(), theta) for spec in specs}


def binary_decision_boundary(loss, theta1_degrees):
    """Where the binary decision boundary of class 1 lies, as the angle to class 2.

    With two classes, a sample at angle ``theta1`` from center 1 and ``theta2`` from
    center 2 is assigned to class 1 when its margin-adjusted target logit beats the
    plain logit of class 2: ``s * f(theta1) > s * cos(theta2)``. The boundary is
    therefore ``theta2 = arccos(f(theta1))`` (clipped to [0, 180] degrees). Without a
    margin it is the diagonal ``theta2 = theta1``; the distance above the diagonal is
    the decision margin of the paper's Table 1 (ArcFace: a constant ``m`` in angle,
    CosFace: a constant ``m`` in cosine, SphereFace: ``(m - 1) * theta1``). Class 2's
    boundary is the mirror image. Softmax is drawn for equal weight norms and zero
    biases, where its boundary is the diagonal.

    Args:
        loss: a loss object from ``keras_arcface.losses.get``.
        theta1_degrees: angles in degrees between the sample and center 1.

    Returns:
        float64 array of boundary angles ``theta2`` in degrees.

    Example:
        >>> from keras_arcface import losses
        >>> binary_decision_boundary(losses.get("arcface", margin=0.5), [30.0])
        array([58.64...])
    """
    target = normalized_target_logit(loss, theta1_degrees)
    return np.degrees(np.arccos(np.clip(target, -1.0, 1.0)))


def decision_margins(theta_degrees=None, specs=MARGIN_LOSSES):
    """Computes the class-1 decision boundary of each loss over ``theta1``.

    Args:
        theta_degrees: ``theta1`` angles in [0, 180] degrees; default 721 points.
        specs: the losses, as `LossSpec`s; default Table 1's losses plus CM1 and CM2.

    Returns:
        ``(theta1_degrees, {label: theta2_boundary_degrees})``.
    """
    theta = _theta_grid(theta_degrees)
    return theta, {spec.label: binary_decision_boundary(spec.build(), theta) for spec in specs}


def plot_target_logit_curves(path, theta_degrees=None, specs=CURVE_LOSSES):
    """Draws Figure 4(b) (normalized target logit against theta) into the PNG ``path``.

    Args:
        path: output PNG file (written atomically).
        theta_degrees: angles in degrees; default 0..180.
        specs: the losses to draw.

    Returns:
        ``{label: curve}`` as computed by `target_logit_curves`.
    """
    plt = require_matplotlib()
    theta, curves = target_logit_curves(theta_degrees, specs)
    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    for label, curve in curves.items():
        axis.plot(theta, curve, label=label, linewidth=1.6)
    axis.axhline(0.0, color="0.7", linewidth=0.8)
    axis.set_xlim(0.0, 180.0)
    axis.set_xticks(np.arange(0, 181, 20))
    axis.set_xlabel("angle between feature and target center, theta (degrees)")
    axis.set_ylabel("target logit / scale")
    axis.set_title("Target logit curves (ArcFace paper, Fig. 4b)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    atomic_save_figure(figure, path)
    return curves


def plot_decision_margins(path, theta_degrees=None, specs=MARGIN_LOSSES):
    """Draws the binary-case decision margins of each loss into the PNG ``path``.

    Each panel is the (theta1, theta2) plane: the class-1 and class-2 boundaries and,
    shaded, the margin between them where neither class is decided (ArcFace paper,
    Table 1 and Figure 5).

    Args:
        path: output PNG file (written atomically).
        theta_degrees: ``theta1`` angles in degrees; default 0..180.
        specs: the losses to draw.

    Returns:
        ``{label: theta2_boundary}`` as computed by `decision_margins`.
    """
    plt = require_matplotlib()
    theta, boundaries = decision_margins(theta_degrees, specs)
    columns = 4
    rows = int(np.ceil(len(boundaries) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 3.0 * rows))
    axes = np.atleast_1d(axes).reshape(-1)
    for axis, (label, boundary) in zip(axes, boundaries.items()):
        # Region between class 1's boundary (theta1, b(theta1)) and class 2's (b(t), t).
        polygon = np.concatenate(
            [np.stack([theta, boundary], 1), np.stack([boundary, theta], 1)[::-1]]
        )
        axis.fill(polygon[:, 0], polygon[:, 1], color="0.8", label="margin")
        axis.plot(theta, boundary, color="tab:blue", label="class 1 boundary")
        axis.plot(boundary, theta, color="tab:red", label="class 2 boundary")
        axis.plot([0, 180], [0, 180], color="0.4", linestyle="--", linewidth=0.8)
        axis.set_xlim(0, 180)
        axis.set_ylim(0, 180)
        axis.set_aspect("equal")
        axis.set_xticks(np.arange(0, 181, 45))
        axis.set_yticks(np.arange(0, 181, 45))
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("theta1 (deg)", fontsize=8)
        axis.set_ylabel("theta2 (deg)", fontsize=8)
    for axis in axes[len(boundaries) :]:
        axis.axis("off")
    axes[0].legend(fontsize=7, loc="upper left")
    figure.suptitle("Decision margins, binary case (ArcFace paper, Table 1)")
    figure.tight_layout()
    atomic_save_figure(figure, path)
    return boundaries


def margin_summary(theta_points=(30.0, 60.0, 90.0), specs=MARGIN_LOSSES):
    """The decision margin ``theta2_boundary - theta1`` (degrees) at a few angles.

    Args:
        theta_points: ``theta1`` values in degrees.
        specs: the losses.

    Returns:
        ``{label: {"30": margin, ...}}`` in degrees, rounded to 0.01.
    """
    theta, boundaries = decision_margins(theta_points, specs)
    return {
        # "+ 0.0" turns a rounded -0.0 into 0.0.
        label: {f"{t:g}": round(float(b - t), 2) + 0.0 for t, b in zip(theta, boundary)}
        for label, boundary in boundaries.items()
    }


def write_analysis_figures(out_dir):
    """Writes ``target_logit_curves.png`` and ``decision_margins.png`` into ``out_dir``.

    Args:
        out_dir: output folder, created if missing.

    Returns:
        dict with the written paths and the margin summary at 30/60/90 degrees.
    """
    curves_path = os.path.join(out_dir, "target_logit_curves.png")
    margins_path = os.path.join(out_dir, "decision_margins.png")
    plot_target_logit_curves(curves_path)
    plot_decision_margins(margins_path)
    return {
        "target_logit_curves": curves_path,
        "decision_margins": margins_path,
        "decision_margin_degrees": margin_summary(),
    }
