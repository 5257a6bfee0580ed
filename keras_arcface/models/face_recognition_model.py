"""The task model: an embedding backbone plus a margin classifier over the identities."""

import keras

# Imported here so that loading a saved task model finds the registered margin head.
from keras_arcface.layers import ArcMarginProduct


@keras.saving.register_keras_serializable(package="keras_arcface")
class FaceRecognitionModel(keras.Model):
    """Backbone + margin classifier, for training; ``.embedding_model`` is what ships.

    Called on ``{"images": ..., "labels": ...}`` it returns the margin head's output for
    ``[embeddings, labels]``: with the default ``ArcMarginProduct`` these are the scaled,
    margin-adjusted float32 logits, so ``keras.losses.SparseCategoricalCrossentropy(
    from_logits=True)`` trains ArcFace. Called on images alone it returns the float32
    cosines ``[B, num_classes]``, for the margin losses of ``keras_arcface.losses``
    (``ArcFaceLoss()(labels, cosine)``).

    ``embedding_model`` is the backbone itself (images in 0..255 -> raw float32
    embedding); it never contains the ``[D, num_classes]`` class-center matrix.

    Args:
        backbone: an embedding model following the contract of ``docs/architecture.md``,
            e.g. ``get_backbone("r50")``.
        num_classes: number of identities. Required unless ``margin_head`` is given.
        margin_head: the classifier layer; default ``ArcMarginProduct(num_classes)``
            (margin 0.5 rad, scale 64). Any ``keras_arcface.layers.NormDense`` works.
        **kwargs: ``keras.Model`` arguments (``name``).

    Example:
        >>> model = FaceRecognitionModel(get_backbone("small"), num_classes=1000)
        >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> model.fit({"images": images, "labels": labels}, labels)
        >>> model.embedding_model.save("embedding.keras")

    Reference: Deng et al., ArcFace, arXiv 1801.07698, figure 2.
    """

    def __init__(self, backbone, num_classes=None, margin_head=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(backbone, keras.Model):
            raise TypeError(f"`backbone` must be a keras.Model. Received: backbone={backbone!r}")
        if margin_head is None:
            if num_classes is None:
                raise ValueError(
                    "Give `num_classes` (or a `margin_head`). Received: num_classes=None"
                )
            margin_head = ArcMarginProduct(num_classes, name="margin_head")
        head_classes = getattr(margin_head, "units", None)
        if num_classes is not None and head_classes is not None and head_classes != num_classes:
            raise ValueError(
                "`num_classes` disagrees with the margin head's units. "
                f"Received: num_classes={num_classes}, margin_head.units={head_classes}"
            )
        self.backbone = backbone
        self.margin_head = margin_head
        self.num_classes = head_classes if num_classes is None else num_classes

    @property
    def embedding_model(self):
        """The embedding model (the backbone), without the class centers."""
        return self.backbone

    def build(self, input_shape):
        shape = input_shape["images"] if isinstance(input_shape, dict) else input_shape
        embedding_shape = self.backbone.compute_output_shape(tuple(shape))
        if not self.margin_head.built:
            self.margin_head.build(tuple(embedding_shape))
        self.built = True

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            if set(inputs) != {"images", "labels"}:
                raise ValueError(
                    "FaceRecognitionModel takes images or {'images', 'labels'}. "
                    f"Received: keys={sorted(inputs)}"
                )
            embeddings = self.backbone(inputs["images"], training=training)
            return self.margin_head([embeddings, inputs["labels"]], training=training)
        return self.margin_head(self.backbone(inputs, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            num_classes=self.num_classes,
            margin_head=keras.saving.serialize_keras_object(self.margin_head),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        config["margin_head"] = keras.saving.deserialize_keras_object(config["margin_head"])
        return cls(**config)


def build_face_model(backbone, num_classes, margin=0.5, scale=64.0, **backbone_kwargs):
    """Builds a ``FaceRecognitionModel`` from a preset name (or a backbone) and ArcFace settings.

    Args:
        backbone: a preset name for ``get_backbone`` ("r50", "mbf", "small" ...) or an
            embedding model.
        num_classes: number of identities.
        margin: additive angular margin in radians. Default 0.5 (28.6 degrees).
        scale: logit scale ``s``. Default 64.0.
        **backbone_kwargs: forwarded to ``get_backbone`` when ``backbone`` is a name.

    Returns:
        The (unbuilt) ``FaceRecognitionModel``.

    Example:
        >>> model = build_face_model("mbf", num_classes=85742, margin=0.5, scale=64.0)

    Reference: Deng et al., ArcFace, arXiv 1801.07698, eq. (3).
    """
    from keras_arcface.models.factory import get_backbone

    if isinstance(backbone, str):
        backbone = get_backbone(backbone, **backbone_kwargs)
    elif backbone_kwargs:
        raise TypeError(
            "Backbone arguments only apply to a preset name. "
            f"Received: backbone_kwargs={backbone_kwargs}"
        )
    head = ArcMarginProduct(num_classes, margin=margin, scale=scale, name="margin_head")
    return FaceRecognitionModel(backbone, num_classes, head)
