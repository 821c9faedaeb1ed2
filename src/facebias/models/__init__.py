"""Models: attribute classifiers on torchvision backbones, the face GAN, and the adapter of a user's own model
(``models.user``: a file, class and state_dict brought to dissect.py's analyses)."""
