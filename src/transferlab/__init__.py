"""transferlab: a folder of photos to a trained, evaluated and explained image classifier."""

__version__ = "0.1.0"


def load(source, strategy=None, runtime="torch"):
    """A trained classifier from a run directory, checkpoint or exported .onnx; see `transferlab.inference.load`."""
    from .inference import load as load_predictor

    return load_predictor(source, strategy, runtime)
