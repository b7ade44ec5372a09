"""Datasets, image decoding, validation, folds, class weights and synthetic phantoms (no TensorFlow)."""
