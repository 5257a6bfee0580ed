"""Raw photos to model input: reading photos as taken (and, later, detection and alignment)."""

from keras_arcface.faces.photos import Photo, decode_photo, read_photo, scale_16_to_8

__all__ = ["Photo", "decode_photo", "read_photo", "scale_16_to_8"]
