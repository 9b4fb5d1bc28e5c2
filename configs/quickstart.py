"""The quick start: a small hourglass on generated people, a few minutes on a 2-core CPU.

jaxpose train --config configs/quickstart.py --workdir workdirs/quickstart
"""

from jaxpose import config as config_lib


def get_config():
  config = config_lib.default_config()
  # Depth 3: 16x16 heatmaps halve to a 2x2 bottom. Upstream's depth 4 would
  # end at 1x1, where BatchNorm normalises one value per image; float32
  # training there is ill-conditioned (the same examples in another order
  # change three steps' parameters by 2e-5, against 3e-6 at depth 3).
  # layer2 of 64 planes (128 channels), not bearpaw's 128 (256 channels):
  # at this width upstream's layer2 would be the widest layer of the network.
  # num_joints: as many as the data has keypoints (COCO-17 for generated people).
  config.model = config_lib.hourglass_model(num_stacks=2, num_blocks=1,
                                            num_joints=config_lib.FROM_DATA,
                                            num_features=32, depth=3, layer2_features=64)
  config.parallel = 'none'
  config.input_size = (64, 64)
  config.sigma = 1.0
  config.optimizer = 'adam'
  config.learning_rate = 2e-3
  config.warmup_steps = 50
  config.batch_size = 32
  config.num_train_steps = 400
  config.lr_decay_steps = (320,)
  config.log_every_steps = 25
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 100
  config.data.source = 'synthetic'
  # Generated limbs keep their colours when mirrored, so a flip would teach
  # contradictory left/right cues; the figures face the camera anyway.
  config.data.flip = False
  config.data.image_size = (96, 96)
  config.data.num_train_examples = 20000
  config.data.num_eval_examples = 256
  return config
