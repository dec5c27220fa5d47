"""Mesh keypoints: the 12-joint keypoint dataset derived from part-segmented human meshes."""
