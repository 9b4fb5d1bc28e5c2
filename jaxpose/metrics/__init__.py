"""Metrics: PCK and MPII PCKh (`pck`), COCO keypoint AP (`coco_ap`), object keypoint similarity (`oks`)."""
