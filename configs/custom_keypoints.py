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

from jaxpose import config as config_lib

SAMPLE = 'tests/data/onehand10k'


def get_config():
  config = config_lib.default_config()
  config.model = config_lib.hourglass_model(num_stacks=2, num_blocks=1,
                                            num_joints=config_lib.FROM_DATA,
                                            num_features=32, depth=3, layer2_features=64)
  config.parallel = 'none'
  config.input_size = (64, 64)
  config.sigma = 1.0
  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.warmup_steps = 20
  config.batch_size = 16
  config.num_train_steps = 200
  config.lr_decay_steps = (160,)
  config.log_every_steps = 20
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 100
  config.data.source = 'coco'
  config.data.train_annotations = f'{SAMPLE}/test_onehand10k.json'
  config.data.train_images = SAMPLE
  config.data.eval_annotations = f'{SAMPLE}/test_onehand10k.json'
  config.data.eval_images = SAMPLE
  # A hand in a tight crop: less zoom and more turning than a person's.
  config.data.scale_factor = 0.2
  config.data.rotation_degrees = 45.0
  return config
