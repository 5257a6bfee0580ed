"""Deprecated home of the Partial FC head: use ``keras_arcface.layers.PartialFC``.

The head moved beside ``NormDense`` in ``keras_arcface.layers`` and takes the margin as one
callable, ``logits_fn(labels, cosine)`` (a margin loss's ``logits``), instead of the whole loss
object. Importing ``PartialFC`` or ``per_example_margin_loss`` from here still works for one
release and warns with a ``DeprecationWarning``; this ``PartialFC`` keeps the old
``per_example_loss(embeddings, labels, loss, global_labels=None, step=0)`` signature.
"""

import warnings

_MOVED = "keras_arcface.training.partial_fc is deprecated; use keras_arcface.layers.PartialFC"


def _legacy_classes():
    import tensorflow as tf

    from keras_arcface.layers import partial_fc

    class PartialFC(partial_fc.PartialFC):
        """``keras_arcface.layers.PartialFC`` with the old loss-object signature (deprecated)."""

        def per_example_loss(self, embeddings, labels, loss, global_labels=None, step=0):
            cosine, local_labels, _ = self(
                embeddings, labels, global_labels=global_labels, step=step
            )
            return per_example_margin_loss(loss, local_labels, cosine)

    def per_example_margin_loss(loss, labels, cosine):
        """Softmax cross-entropy of ``loss.logits(labels, cosine)``, float32 ``[B]``."""
        logits_fn = partial_fc.require_logits_fn(getattr(loss, "logits", None))
        logits = tf.cast(logits_fn(labels, cosine), tf.float32)
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    return {"PartialFC": PartialFC, "per_example_margin_loss": per_example_margin_loss}


_CACHE = {}


def __getattr__(name):
    if name not in ("PartialFC", "per_example_margin_loss"):
        raise AttributeError(
            f"module 'keras_arcface.training.partial_fc' has no attribute {name!r}"
        )
    warnings.warn(f"{_MOVED} (logits_fn=loss.logits).", DeprecationWarning, stacklevel=2)
    if not _CACHE:
        _CACHE.update(_legacy_classes())
    return _CACHE[name]
