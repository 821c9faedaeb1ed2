"""facebias: train, audit, de-bias and dissect face-attribute classifiers."""

__version__ = "0.1.0"
