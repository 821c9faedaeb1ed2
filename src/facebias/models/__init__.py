"""Models: attribute classifiers on torchvision backbones (and, later, GANs and user-supplied models)."""
