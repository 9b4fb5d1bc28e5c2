"""Ablation: stacks x learning rate on the quick start, two seeds per point.

jaxpose sweep --config configs/sweeps/quickstart_ablation.py --workdir workdirs/ablation
  -> 2 x 2 points x 2 seeds = 8 runs; workdirs/ablation/sweep_results.md holds
     mean ± sample std over the seeds, sweep_plot_<field>.png the main metric.
"""

import ml_collections

from jaxpose.sweep import product, sweep


def get_config():
  s = ml_collections.ConfigDict()
  s.base = '../quickstart.py'
  s.points = product(sweep('model.num_stacks', [1, 2]), sweep('learning_rate', [1e-3, 2e-3]))
  s.seeds = 2  # each point with config.seed = 0 and 1
  return s
