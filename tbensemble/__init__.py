"""tbensemble: CNN ensembles that tell tuberculosis from normal chest X-rays, served through ONNX Runtime."""

__version__ = "0.1.0"
