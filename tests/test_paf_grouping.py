"""jaxpose.codecs.paf_grouping against upstream's post-processing.

Upstream's (Lightweight OpenPose's) peak finding is transcribed in
scripts/upstream_grouping.py; limb scoring and assembly are tested through
`paf.decode` in test_paf.py, against the whole transcribed post-processing.
"""

import os
import sys

import numpy as np

from jaxpose.codecs import paf_grouping

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
import upstream_grouping  # pylint: disable=g-import-not-at-top


def test_find_peaks_equals_upstream_on_dense_noise():
  rng = np.random.default_rng(6)
  maps = (rng.random((40, 50, 18)) ** 4).astype(np.float32)
  maps[10:12, 20:22, 3] = 2  # a flat top: no peak for upstream
  x, y, kind, value = paf_grouping.find_peaks(maps)
  expected, first = [], 0
  for k in range(18):
    peaks = upstream_grouping.find_peaks(maps[..., k], first)
    expected += [(px, py, k, v) for px, py, v, _ in peaks]
    first += len(peaks)
  np.testing.assert_array_equal(np.stack([x, y, kind, value], -1), np.array(expected))
  assert len(x) > 500
  assert not ((kind == 3) & (x >= 20) & (x <= 21) & (y >= 10) & (y <= 11)).any()
  # Without upstream's rules, the flat top's first pixel is the peak.
  x, y, kind, _ = paf_grouping.find_peaks(maps, upstream=False)
  assert ((kind == 3) & (x == 20) & (y == 10)).sum() == 1


def test_find_peaks_suppresses_by_value_without_upstream_rules():
  maps = np.zeros((20, 20, 1), np.float32)
  maps[5, 5, 0], maps[5, 9, 0], maps[5, 14, 0] = 0.5, 0.9, 0.6  # 4 and 5 apart
  x, _, _, _ = paf_grouping.find_peaks(maps)
  np.testing.assert_array_equal(x, [5, 14])  # x order: 5 drops 9, 9 dropped keeps nothing
  x, _, _, _ = paf_grouping.find_peaks(maps, upstream=False)
  np.testing.assert_array_equal(x, [9])  # by value: 9 drops 5 and 14
