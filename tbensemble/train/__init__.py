"""Keras training: backbones registry, tf.data pipeline with augmentation, fold trainer, OOF scores."""
