"""transferlab: a folder of photos to a trained, evaluated and explained image classifier."""

__version__ = "0.1.0"
