"""A stacked hourglass on COCO at pod scale: global batch 1024 under shard_map over every host's devices.

The recipe of configs/hourglass_coco.py (4 stacks, 256x192, RMSprop at
2.5e-4 for batch 32, decays at epochs 90 and 120 of 140), scaled to a global
batch of 1024 with `config.scale_to_global_batch`: the rate by sqrt(32) for
RMSprop (the linear rule, 32x, is stated for SGD; pass rule='linear' to try
it), step counts divided by 32, and 5 epochs of gradual warm-up. On a TPU
v5e-64 slice that is 16 crops per chip. Every host runs the same command
(jax.distributed finds the others on Cloud TPU):

jaxpose train --config configs/hourglass_coco_pod.py --workdir gs://bucket/hg_coco_pod \\
    --config.data.source=tfds --config.data.tfds_name=coco_keypoints_jaxpose
"""

import os

from jaxpose import config as config_lib
from jaxpose import sweep


def get_config(global_batch='1024'):
  config = sweep.load_config_file(os.path.join(os.path.dirname(__file__), 'hourglass_coco.py'))
  config.parallel = 'shard_map'
  return config_lib.scale_to_global_batch(config, int(global_batch), rule='sqrt',
                                          examples_per_epoch=config_lib.COCO_TRAIN_PEOPLE)
