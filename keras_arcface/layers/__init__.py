"""Keras layers of keras-arcface (pure ``keras.ops``: TensorFlow, JAX or PyTorch backends).

``NormDense`` gives float32 cosine logits in ``[-1, 1]``; ``ArcMarginProduct`` is the same head
that also applies the ArcFace margin when called on ``[embeddings, labels]``.
"""

from keras_arcface.layers.arc_margin_product import ArcMarginProduct
from keras_arcface.layers.norm_dense import NormDense, l2_normalize

__all__ = ["ArcMarginProduct", "NormDense", "l2_normalize"]
