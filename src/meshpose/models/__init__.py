"""The Key2Mesh-style keypoint regressor: network, training task, model file, run export; the toy tasks."""
