"""Ablation: how many stacks does the quick-start hourglass need?

jaxpose sweep --config configs/sweeps/quickstart_stacks.py --workdir workdirs/sweep_stacks
"""

import ml_collections


def get_config():
  sweep = ml_collections.ConfigDict()
  sweep.base = '../quickstart.py'
  sweep.points = [{'model.num_stacks': 1}, {'model.num_stacks': 2}]
  return sweep
