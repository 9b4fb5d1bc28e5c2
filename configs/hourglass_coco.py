"""A stacked hourglass on COCO person keypoints, 256x192 crops (SimpleBaseline's setting).

jaxpose train --config configs/hourglass_coco.py --workdir workdirs/hg_coco \
    --config.data.coco_dir=/data/coco
"""

from jaxpose import config as config_lib


def get_config(num_stacks='4'):
  config = config_lib.default_config()
  config.model = config_lib.hourglass_model(num_stacks=int(num_stacks), num_joints=17)
  config.data.source = 'coco'
  config.best_metric = 'pck'
  config.parallel = 'pmap'
  config = config_lib.newell_hourglass_recipe(
      config, steps_per_epoch=config_lib.COCO_TRAIN_PEOPLE // 32, num_epochs=140)
  config.batch_size = 32
  config.input_size = (192, 256)
  config.sigma = 2.0
  config.lr_decay_steps = (90 * (config_lib.COCO_TRAIN_PEOPLE // 32), 120 * (config_lib.COCO_TRAIN_PEOPLE // 32))
  return config
