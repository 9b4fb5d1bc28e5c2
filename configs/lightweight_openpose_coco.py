"""Lightweight OpenPose on COCO (Osokin 2018): 368x368 crops, Adam 4e-5, batch 80.

jaxpose train --config configs/lightweight_openpose_coco.py --workdir workdirs/lwop \
    --config.data.coco_dir=/data/coco
Upstream starts from ImageNet MobileNet weights and trains in three phases (then
with 3 refinement stages, then 1); this config is its single-phase core.
"""

from jaxpose import config as config_lib

BATCH_SIZE = 80


def get_config():
  config = config_lib.default_config()
  config.model = config_lib.lightweight_openpose_model(num_refinement_stages=1)
  config.data.source = 'coco'
  config.data.max_people = 16
  config.input_size = (368, 368)
  config.sigma = 7.0  # input pixels
  config.paf_thickness = 1.0
  config.optimizer = 'adam'
  config.learning_rate = 4e-5
  config.weight_decay = 5e-4
  config.batch_size = BATCH_SIZE
  steps_per_epoch = 56599 // BATCH_SIZE  # COCO train2017 images with people
  config.num_train_steps = 280 * steps_per_epoch
  config.lr_decay_steps = tuple(e * steps_per_epoch for e in (100, 200, 260))
  config.lr_decay_factor = 0.333
  config.log_every_steps = 100
  config.eval_every_steps = 5 * steps_per_epoch
  config.checkpoint_every_steps = steps_per_epoch
  config.best_metric = 'loss'
  config.best_mode = 'min'
  return config
