"""Image geometry shared by every data source: CelebA's aligned frame and the reference face crop."""

# CelebA's aligned images (and SynthFaces, which copies the layout) are 178 wide and 218 tall.
ALIGNED_WIDTH = 178
ALIGNED_HEIGHT = 218

# The reference crop (Ramaswamy et al.): rows 57..185, cols 25..153 -> a 128x128 face.
CROP_TOP, CROP_BOTTOM = 57, 185
CROP_LEFT, CROP_RIGHT = 25, 153
CROP_SIZE = 128

LANDMARK_NAMES = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
