"""Fast Pose Distillation: a light 4-stack student taught by an 8-stack teacher on MPII.

Train (or convert) the teacher first, then:
jaxpose train --config configs/hourglass_kd.py --workdir workdirs/hg4_kd \
    --config.teacher.workdir=workdirs/hg8_mpii --config.data.mpii_dir=/data/mpii
"""

from jaxpose import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.model = config_lib.hourglass_model(num_stacks=4, num_joints=16, num_features=64)
  config.data.source = 'mpii'
  config.best_metric = 'pckh'
  config.teacher.workdir = ''  # required: set on the command line
  config.teacher.kdloss_alpha = 0.5
  return config_lib.newell_hourglass_recipe(
      config, steps_per_epoch=config_lib.MPII_TRAIN_PEOPLE // 6)
