"""Deprecated location: the argument checks live in :mod:`keras_arcface._validation`."""

from keras_arcface._validation import check_choice, check_number, check_positive_int

__all__ = ["check_choice", "check_number", "check_positive_int"]
