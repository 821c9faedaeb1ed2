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

# The 68-point Face Dictionary's further concepts (docs/design.md §7.2): finer parts that 68 points
# outline, and masks for more CelebA attributes. Every one belongs to one of REGIONS; the jaw line and the
# area under the chin count to the chin region (the lower face), sideburns to the hair. The five-point
# dictionary draws them too (from a mean 68-point shape), so a face dlib cannot place still gets every
# mask. The exact SynthFaces masks remain LOCAL_CONCEPTS (plus render.DERIVED_CONCEPTS).
LANDMARK68_CONCEPT_REGION = {
    "left_eye": "eye",  # the image-left eye (CelebA's "lefteye", iBUG 36-41)
    "right_eye": "eye",
    "eye_bags": "eye",
    "nose_bridge": "nose",
    "nostrils": "nose",
    "upper_lip": "mouth",
    "lower_lip": "mouth",
    "mouth_corners": "mouth",
    "jaw": "chin",
    "Bags_Under_Eyes": "eye",
    "Narrow_Eyes": "eye",
    "Arched_Eyebrows": "eye",
    "Bushy_Eyebrows": "eye",
    "Big_Nose": "nose",
    "Pointy_Nose": "nose",
    "Big_Lips": "mouth",
    "Mouth_Slightly_Open": "mouth",
    "Goatee": "chin",
    "5_o_Clock_Shadow": "chin",
    "Double_Chin": "chin",
    "High_Cheekbones": "cheek",
    "Rosy_Cheeks": "cheek",
    "Receding_Hairline": "forehead",
    "Sideburns": "hair",
}
LANDMARK68_CONCEPTS = tuple(LANDMARK68_CONCEPT_REGION)
LANDMARK68_PARTS = ("left_eye", "right_eye", "eye_bags", "nose_bridge", "nostrils", "upper_lip", "lower_lip",
                    "mouth_corners", "jaw")  # fmt: skip
# Every concept of either dictionary and its region: the one lookup for a concept's region.
CONCEPT_REGION = {**LOCAL_CONCEPT_REGION, **LANDMARK68_CONCEPT_REGION}
ALL_CONCEPTS = tuple(CONCEPT_REGION)

# concept -> (CelebA attribute, value that makes the concept present). Beard is CelebA's No_Beard == 0.
ATTRIBUTE_OF_CONCEPT = {
    "Eyeglasses": ("Eyeglasses", 1),
    "Mustache": ("Mustache", 1),
    "Beard": ("No_Beard", 0),
    "Wearing_Lipstick": ("Wearing_Lipstick", 1),
    "Wearing_Hat": ("Wearing_Hat", 1),
    "Bangs": ("Bangs", 1),
    "Wearing_Earrings": ("Wearing_Earrings", 1),
    **{c: (c, 1) for c in LANDMARK68_CONCEPTS if c not in LANDMARK68_PARTS},
}

# Non-local concepts: image groups rather than masks. `grayscale` is applied as a transform.
NONLOCAL_CONCEPTS = ("Male", "Young", "Pale_Skin", "grayscale")
