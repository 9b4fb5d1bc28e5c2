"""The published 8-stack hourglass on MPII (Newell et al. 2016; bearpaw/pytorch-pose).

jaxpose train --config configs/hourglass_mpii.py --workdir workdirs/hg8_mpii \
    --config.data.mpii_dir=/data/mpii
Pass a number to train a smaller stack: --config configs/hourglass_mpii.py:2
"""

from jaxpose import config as config_lib


def get_config(num_stacks='8'):
  config = config_lib.default_config()
  config.model = config_lib.hourglass_model(num_stacks=int(num_stacks), num_joints=16)
  config.data.source = 'mpii'
  config.best_metric = 'pckh'
  config.parallel = 'pmap'
  return config_lib.newell_hourglass_recipe(config, steps_per_epoch=config_lib.MPII_TRAIN_PEOPLE // 6)
