"""Domain adaptation of the keypoint regressor to unlabelled real detections (``meshpose adapt``)."""
