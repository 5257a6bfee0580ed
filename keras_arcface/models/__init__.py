"""Face recognition backbones: iResNet, MobileFaceNet, embedding heads and presets.

Public API:
    get_backbone(name, ...)       embedding model of a preset ("r50", "mbf", "small" ...)
    FaceRecognitionModel, build_face_model  backbone + margin classifier (.embedding_model)
    PRESETS, list_presets()       the presets, as plain dicts
    iresnet(...), mobilefacenet(...)  builders taking the structure directly
    embedding_head_e, embedding_head_gdc  the two embedding heads
    count_params_and_macs(model_or_name)  parameters and MACs
    load_insightface_weights(model, state_dict_or_path, arch)  InsightFace PyTorch import
    load_insightface_onnx(path)   InsightFace ONNX model (w600k_r50.onnx ...) -> Keras model
    fold_batch_norm(model)        inference copy with each BN folded into the layer before it
    FastBatchNormalization, FastPReLU  Keras' BN and PReLU with faster TF training steps
"""

from keras_arcface.models.face_recognition_model import FaceRecognitionModel, build_face_model
from keras_arcface.models.factory import get_backbone
from keras_arcface.models.fast_batch_normalization import FastBatchNormalization
from keras_arcface.models.fast_prelu import FastPReLU
from keras_arcface.models.flops import count_params_and_macs
from keras_arcface.models.folding import fold_batch_norm
from keras_arcface.models.grouped_conv2d import GroupedConv2D
from keras_arcface.models.heads import embedding_head, embedding_head_e, embedding_head_gdc
from keras_arcface.models.imports import (
    load_insightface_onnx,
    load_insightface_weights,
)
from keras_arcface.models.iresnet import IRESNET_DEPTHS, iresnet
from keras_arcface.models.mobilefacenet import mobilefacenet
from keras_arcface.models.presets import PRESETS, list_presets

__all__ = [
    "FaceRecognitionModel",
    "FastBatchNormalization",
    "FastPReLU",
    "GroupedConv2D",
    "IRESNET_DEPTHS",
    "PRESETS",
    "build_face_model",
    "count_params_and_macs",
    "embedding_head",
    "embedding_head_e",
    "embedding_head_gdc",
    "fold_batch_norm",
    "get_backbone",
    "iresnet",
    "list_presets",
    "load_insightface_onnx",
    "load_insightface_weights",
    "mobilefacenet",
]
