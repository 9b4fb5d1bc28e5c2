"""scripts/bench_export_time.py: one export each way of a 1-stack bearpaw hourglass, and the pass's share."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
import bench_export_time  # pylint: disable=g-import-not-at-top


@pytest.mark.slow  # ~20 s: a jax2onnx export under cProfile, and PyTorch's
def test_a_row_times_both_exports_and_finds_the_transpose_pass(tmp_path):
  row = bench_export_time.time_exports(1, str(tmp_path), profiled=True)
  assert row['stacks'] == 1 and row['jaxpose_s'] > 0 and row['torch_s'] > 0
  # bearpaw's 1-stack graph: the jaxpose file keeps its layout Transposes,
  # PyTorch's is NCHW throughout (354 and 164 nodes when measured).
  assert row['torch_nodes'] > 100 and row['jaxpose_nodes'] > row['torch_nodes']
  # The profile found the pass (0 would mean it was renamed upstream and the
  # benchmark's share no longer measures anything).
  assert 0.05 < row['transpose_pass_share'] < 1
  assert sorted(os.listdir(tmp_path)) == ['jaxpose_1.onnx', 'torch_1.onnx']
