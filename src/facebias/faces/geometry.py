"""Image geometry shared by every data source: CelebA's aligned frame and the reference face crop."""

# CelebA's aligned images (and SynthFaces, which copies the layout) are 178 wide and 218 tall.
ALIGNED_WIDTH = 178
ALIGNED_HEIGHT = 218

# The reference crop (Ramaswamy et al.): rows 57..185, cols 25..153 -> a 128x128 face.
CROP_TOP, CROP_BOTTOM = 57, 185
CROP_LEFT, CROP_RIGHT = 25, 153
CROP_SIZE = 128

LANDMARK_NAMES = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")


def crop_frame_landmarks(landmarks, sizes):
    """Landmarks of crop=none images (pixels of each source image; sizes (n, 2) as width, height) in the
    aligned frame whose reference crop is the image's centre square: x' = 24.5 + (x + 0.5 - left) * 128 / side,
    where (left, top) is the centre square's corner as the image cache's centre crop computes it. Any number
    of points per face: (n, P, 2)."""
    import numpy as np

    landmarks = np.asarray(landmarks, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    side = sizes.min(axis=1)
    corner = np.floor((sizes - side[:, None]) / 2)
    origin = np.array([CROP_LEFT - 0.5, CROP_TOP - 0.5])
    scale = (CROP_SIZE / side)[:, None, None]
    return (origin + (landmarks + 0.5 - corner[:, None, :]) * scale).astype(np.float32)


def image_sizes(table, rows):
    """(len(rows), 2) width, height of some of a table's images (reads the headers only)."""
    import numpy as np
    from PIL import Image

    sizes = []
    for row in rows:
        with Image.open(table.image_dir / table.filenames[row]) as image:
            sizes.append(image.size)
    return np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
