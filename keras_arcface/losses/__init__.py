"""Margin losses on cosine logits and the paper's hypersphere losses.

Softmax family (``y_true`` sparse int labels ``[B]``, ``y_pred`` float cosines ``[B, N]``;
every class has ``logits(y_true, cosine)`` returning the scaled, margin-adjusted float32
logits): ``ArcFaceLoss``, ``CosFaceLoss``, ``SphereFaceLoss``, ``CombinedMarginLoss``,
``NormSoftmaxLoss`` and ``SoftmaxLoss`` (plain logits of a ``Dense`` head).

Section 2.3 of the paper: ``IntraLoss``, ``InterLoss`` / ``InterClassRegularizer`` and the
angular ``TripletLoss``. ``get(name)`` builds a softmax-family loss by name.
All margins are in radians.
"""

from keras_arcface.losses import margins
from keras_arcface.losses.arcface_loss import ArcFaceLoss
from keras_arcface.losses.combined_margin_loss import CombinedMarginLoss
from keras_arcface.losses.cosface_loss import CosFaceLoss
from keras_arcface.losses.inter_loss import InterClassRegularizer, InterLoss, inter_class_angle
from keras_arcface.losses.intra_loss import IntraLoss
from keras_arcface.losses.margin_loss import MarginLoss, intra_angle
from keras_arcface.losses.norm_softmax_loss import NormSoftmaxLoss
from keras_arcface.losses.registry import available, get
from keras_arcface.losses.softmax_loss import SoftmaxLoss
from keras_arcface.losses.sphereface_loss import SphereFaceLoss
from keras_arcface.losses.triplet_loss import TripletLoss

__all__ = [
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "CosFaceLoss",
    "InterClassRegularizer",
    "InterLoss",
    "IntraLoss",
    "MarginLoss",
    "NormSoftmaxLoss",
    "SoftmaxLoss",
    "SphereFaceLoss",
    "TripletLoss",
    "available",
    "get",
    "inter_class_angle",
    "intra_angle",
    "margins",
]
