"""Keras layers of keras-arcface (pure ``keras.ops``: TensorFlow, JAX or PyTorch backends).

``NormDense`` gives float32 cosine logits in ``[-1, 1]``; ``ArcMarginProduct`` is the same head
that also applies the ArcFace margin when called on ``[embeddings, labels]``. ``PartialFC``
(TensorFlow) is the training head with Partial FC sampling. All keep one class center per row,
``[classes, D]`` (``CENTER_LAYOUT``) and take the margin as one callable,
``logits_fn(labels, cosine)``.
"""

from keras_arcface.layers.arc_margin_product import ArcMarginProduct
from keras_arcface.layers.norm_dense import CENTER_LAYOUT, NormDense, l2_normalize

__all__ = [
    "ArcMarginProduct",
    "CENTER_LAYOUT",
    "NormDense",
    "PartialFC",
    "ShardedPartialFC",
    "l2_normalize",
]


def __getattr__(name):
    # PartialFC needs TensorFlow; import it only when asked for (the other layers run on
    # any Keras backend).
    if name == "PartialFC":
        from keras_arcface.layers.partial_fc import PartialFC

        return PartialFC
    if name == "ShardedPartialFC":
        from keras_arcface.layers.sharded_partial_fc import ShardedPartialFC

        return ShardedPartialFC
    if name == "CENTRE_LAYOUT":
        from keras_arcface.layers import norm_dense

        return norm_dense.CENTRE_LAYOUT  # warns: renamed CENTER_LAYOUT
    raise AttributeError(f"module 'keras_arcface.layers' has no attribute {name!r}")
