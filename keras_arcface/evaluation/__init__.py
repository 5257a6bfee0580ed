"""Evaluation: the reference verification protocol, identification (1:N), reports, plots.

Everything here is NumPy; TensorFlow is imported only by the ``eval`` command (through
``keras_arcface.inference``) and matplotlib only by the plotting functions.

Main entry points:
    verification_metrics      the 10-fold protocol, TAR@FAR, AUC, EER on pair embeddings
    evaluate_verification     embed a pair set (flip fusion) and run the protocol
    evaluate_model            the same for a Keras model or an Embedder and a .bin file
    identification_metrics    rank-k accuracy and TPIR at FPIR of probes against a gallery
    evaluate_identification   embed labelled images, split them and run the above
    search                    chunked 1:N top-k search
    plot_roc, plot_score_histogram   PNG charts (matplotlib extra)
"""

from keras_arcface.evaluation.identification import (
    evaluate_identification,
    identification_metrics,
    search,
    split_gallery_probe,
)
from keras_arcface.evaluation.plots import plot_roc, plot_score_histogram
from keras_arcface.evaluation.report import (
    identification_table,
    summarize,
    to_jsonable,
    verification_table,
    write_json,
)
from keras_arcface.evaluation.verification import (
    ACCURACY_THRESHOLDS,
    DEFAULT_FAR_TARGETS,
    FAR_THRESHOLDS,
    embed_images,
    evaluate_model,
    evaluate_verification,
    fold_bounds,
    format_far,
    l2_normalize,
    pair_distances,
    roc_curve,
    verification_metrics,
)

__all__ = [
    "ACCURACY_THRESHOLDS",
    "DEFAULT_FAR_TARGETS",
    "FAR_THRESHOLDS",
    "embed_images",
    "evaluate_identification",
    "evaluate_model",
    "evaluate_verification",
    "fold_bounds",
    "format_far",
    "identification_metrics",
    "identification_table",
    "l2_normalize",
    "pair_distances",
    "plot_roc",
    "plot_score_histogram",
    "roc_curve",
    "search",
    "split_gallery_probe",
    "summarize",
    "to_jsonable",
    "verification_metrics",
    "verification_table",
    "write_json",
]
