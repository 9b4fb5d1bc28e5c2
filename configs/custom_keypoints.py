"""Your own keypoints: a top-down hourglass on a COCO-format file of any layout.

The layout (keypoint names, limbs, flip pairs from the names, OKS sigmas)
comes from the file's category, and the number of heatmaps follows it. As
shipped it trains on the bundled OneHand10K sample, 21 hand keypoints (a
wrist and four joints per finger; no left / right names, so no flip pairs),
from the repository root:

  jaxpose train --config configs/custom_keypoints.py --workdir workdirs/hands

Point it at a CVAT or Label Studio "COCO Keypoints" export of your own:

  jaxpose train --config configs/custom_keypoints.py --workdir workdirs/mine \
      --config.data.train_annotations=export/train.json --config.data.train_images=export/images \
      --config.data.eval_annotations=export/val.json --config.data.eval_images=export/images

and fine-tune from any checkpoint of another layout (its heads start fresh):
--config.init_from=workdirs/quickstart. README, "Train on your own keypoints".
"""

import os

from jaxpose import config as config_lib

SAMPLE = 'tests/data/onehand10k'


def get_config():
  # The quick start's small hourglass and schedule, on a COCO-format file:
  # its num_joints (0) follows the file's keypoints.
  config = config_lib.load_config_file(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'quickstart.py'))
  config.num_train_steps = 200
  config.warmup_steps = 20
  config.lr_decay_steps = (160,)
  config.log_every_steps = 20
  config.data.source = 'coco'
  config.data.train_annotations = f'{SAMPLE}/test_onehand10k.json'
  config.data.train_images = SAMPLE
  config.data.eval_annotations = f'{SAMPLE}/test_onehand10k.json'
  config.data.eval_images = SAMPLE
  # A hand in a tight crop: less zoom and more turning than a person's; with
  # no left / right names there is nothing to swap, so mirrored hands are fine.
  config.data.flip = True
  config.data.scale_factor = 0.2
  config.data.rotation_degrees = 45.0
  return config
