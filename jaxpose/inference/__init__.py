"""Inference: from images and person boxes to keypoints in image coordinates."""
