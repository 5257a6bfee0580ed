"""FastBatchNormalization: Keras batch normalization on TensorFlow's fused training kernel."""

import keras


@keras.saving.register_keras_serializable(package="keras_arcface")
class FastBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that trains with TensorFlow's fused kernel.

    Keras 3 computes batch statistics and the normalization as separate ops and lets
    autodiff build the backward pass: about a dozen tensor-sized ops per layer, forward
    and backward. Under the TensorFlow backend this layer runs a channels-last training
    step as one ``FusedBatchNormV3`` forward and one ``FusedBatchNormGradV3`` backward
    instead. Every backbone uses it (``blocks.batch_norm``); it is what makes a training
    step faster than the PyTorch reference on CPU (``benchmarks/backbone_throughput.py
    --bn both`` measures both layers side by side).

    Everything else is the parent layer's: the weights, the moving-average update
    (``moving = moving * momentum + batch * (1 - momentum)``, biased batch variance), the
    inference path, the config. On other backends, or with ``mask``, ``renorm``,
    ``synchronized`` or a non-last axis, it simply is ``keras.layers.BatchNormalization``.

    Args:
        **kwargs: the arguments of ``keras.layers.BatchNormalization``.

    Example:
        >>> x = FastBatchNormalization(momentum=0.9, epsilon=1e-5)(feature_map)
    """

    def _can_fuse(self, inputs, training, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) in (2, 4)
            and self.axis in (-1, len(inputs.shape) - 1)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")
        channels = x.shape[-1]
        if len(x.shape) == 2:
            x = tf.reshape(x, [-1, 1, 1, channels])
        gamma = self.gamma if self.scale else tf.ones([channels], "float32")
        beta = self.beta if self.center else tf.zeros([channels], "float32")
        y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The kernel returns the Bessel-corrected variance; the parent layer (and this one)
        # track the biased one.
        # A single value per channel has no unbiased variance (NaN); its biased one is 0.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), "float32")
        variance = tf.where(
            count > 1.0, unbiased_variance * (count - 1.0) / count, tf.zeros_like(mean)
        )
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        if len(inputs.shape) == 2:
            y = tf.reshape(y, [-1, channels])
        return tf.cast(y, self.compute_dtype)
