"""contnet: continuation optimizers, Sequential2D and Solo Connection, with an experiment runner."""
__version__ = "0.1.0"
