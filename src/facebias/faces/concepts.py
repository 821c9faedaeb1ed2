"""The vocabulary of facial concepts and regions, shared by SynthFaces masks and the Face Dictionary.

One place so that a SynthFaces ground-truth mask and a landmark-derived dictionary mask of the same
concept carry the same name and can be scored against each other.
"""

REGIONS = ("eye", "nose", "mouth", "cheek", "chin", "forehead", "hair")

# Local concepts: a mask per image. Parts are present on every face; attribute-conditioned
# concepts only where the attribute is on (see ATTRIBUTE_OF_CONCEPT).
LOCAL_CONCEPT_REGION = {
    "eyes": "eye",
    "brows": "eye",
    "nose": "nose",
    "mouth": "mouth",
    "cheeks": "cheek",
    "chin": "chin",
    "forehead": "forehead",
    "hair": "hair",
    "Eyeglasses": "eye",
    "Mustache": "mouth",
    "Beard": "chin",
    "Wearing_Lipstick": "mouth",
    "Wearing_Hat": "hair",
    "Bangs": "forehead",
    "Wearing_Earrings": "cheek",
}
LOCAL_CONCEPTS = tuple(LOCAL_CONCEPT_REGION)
FACE_PARTS = ("eyes", "brows", "nose", "mouth", "cheeks", "chin", "forehead", "hair")

# concept -> (CelebA attribute, value that makes the concept present). Beard is CelebA's No_Beard == 0.
ATTRIBUTE_OF_CONCEPT = {
    "Eyeglasses": ("Eyeglasses", 1),
    "Mustache": ("Mustache", 1),
    "Beard": ("No_Beard", 0),
    "Wearing_Lipstick": ("Wearing_Lipstick", 1),
    "Wearing_Hat": ("Wearing_Hat", 1),
    "Bangs": ("Bangs", 1),
    "Wearing_Earrings": ("Wearing_Earrings", 1),
}

# Non-local concepts: image groups rather than masks. `grayscale` is applied as a transform.
NONLOCAL_CONCEPTS = ("Male", "Young", "Pale_Skin", "grayscale")
