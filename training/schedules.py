"""Learning-rate schedules: linear warm-up followed by polynomial, step, cosine or constant.

The schedule is a function of the global step, so resuming a run at step ``k`` resumes the
schedule at ``k`` too (the step is part of every checkpoint).

Example:
    >>> from keras_arcface.training.schedules import WarmupDecay
    >>> lr = WarmupDecay(0.1, total_steps=1000, warmup_steps=100, decay="step",
    ...                  boundaries=[600, 900])
    >>> float(lr(50)), float(lr(700))
    (0.05, 0.01)
"""

import keras
from keras import ops

DECAYS = ("polynomial", "step", "cosine", "constant")


@keras.saving.register_keras_serializable(package="keras_arcface")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``learning_rate``, then a decay to the end of the run.

    During warm-up (``step < warmup_steps``) the rate is ``learning_rate * step / warmup``.
    After it, with ``t = (step - warmup) / (total - warmup)`` clipped to [0, 1]:

    - ``polynomial``: ``end + (lr - end) * (1 - t) ** power`` (the reference recipe, power 2);
    - ``cosine``: ``end + (lr - end) * (1 + cos(pi * t)) / 2``;
    - ``step``: ``lr * decay_factor ** (number of boundaries <= step)`` (the paper's /10 at
      fixed iterations);
    - ``constant``: ``lr``.

    Args:
        learning_rate: peak rate (after any batch-size scaling).
        total_steps: steps of the whole run.
        warmup_steps: warm-up length in steps. Default 0.
        decay: one of ``polynomial``, ``step``, ``cosine``, ``constant``. Default
            ``"polynomial"``.
        power: polynomial power. Default 2.0.
        boundaries: global steps at which the step decay multiplies by ``decay_factor``.
        decay_factor: multiplier per boundary. Default 0.1.
        end_learning_rate: final rate of polynomial/cosine decay. Default 0.0.

    Example:
        >>> WarmupDecay(0.1, total_steps=100, decay="polynomial")(50)  # 0.1 * 0.5 ** 2
    """

    def __init__(
        self,
        learning_rate,
        total_steps,
        warmup_steps=0,
        decay="polynomial",
        power=2.0,
        boundaries=(),
        decay_factor=0.1,
        end_learning_rate=0.0,
    ):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {', '.join(DECAYS)}. Received: decay={decay!r}")
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0. Received: total_steps={total_steps!r}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps). Received: warmup_steps={warmup_steps!r}"
            )
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.power = float(power)
        self.boundaries = [int(b) for b in boundaries]
        self.decay_factor = float(decay_factor)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.learning_rate
        end = self.end_learning_rate
        warm = float(self.warmup_steps)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        t = ops.clip((step - warm) / span, 0.0, 1.0)
        if self.decay == "polynomial":
            decayed = end + (peak - end) * ops.power(1.0 - t, self.power)
        elif self.decay == "cosine":
            decayed = end + (peak - end) * 0.5 * (1.0 + ops.cos(3.141592653589793 * t))
        elif self.decay == "step":
            passed = ops.zeros((), "float32")
            for boundary in self.boundaries:
                passed = passed + ops.cast(step >= float(boundary), "float32")
            decayed = peak * ops.power(self.decay_factor, passed)
        else:
            decayed = ops.convert_to_tensor(peak, "float32")
        if self.warmup_steps > 0:
            warmed = peak * step / warm
            return ops.where(step < warm, warmed, decayed)
        return decayed

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "power": self.power,
            "boundaries": list(self.boundaries),
            "decay_factor": self.decay_factor,
            "end_learning_rate": self.end_learning_rate,
        }


def from_config(config, derived):
    """Builds the schedule of an experiment.

    Args:
        config: an ``ExperimentConfig``.
        derived: its ``Derived`` values (peak rate and step counts).

    Returns:
        A :class:`WarmupDecay`.
    """
    sched = config.schedule
    return WarmupDecay(
        learning_rate=derived.learning_rate,
        total_steps=derived.total_steps,
        warmup_steps=derived.warmup_steps,
        decay=sched.name,
        power=sched.power,
        boundaries=derived.decay_steps,
        decay_factor=sched.decay_factor,
        end_learning_rate=sched.end_learning_rate,
    )
