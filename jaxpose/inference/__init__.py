"""Inference: top-down and bottom-up pose estimation on images and videos, and tracking."""
