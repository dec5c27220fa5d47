"""Images in, bodies out: detect 2D keypoints in photos and videos (MediaPipe by default, or any
detector), estimate each person's body, place it in the camera and draw it over the picture.

    >>> from meshpose.image import ImageBodyEstimator, process
    >>> people = ImageBodyEstimator()(meshpose.io.images.read_image("photo.jpg"))
    >>> process("photos/", "out/")        # what ``meshpose image photos/ --out-dir out`` does
"""
from meshpose.image.detectors import MEDIAPIPE33, MediaPipePose, to_joint_set
from meshpose.image.estimate import ImageBodyEstimator, reprojection_errors
from meshpose.image.run import MediaReport, process

__all__ = ["MEDIAPIPE33", "ImageBodyEstimator", "MediaPipePose", "MediaReport", "process",
           "reprojection_errors", "to_joint_set"]
