"""STAF's quick start: the recurrent model on generated clips of walking people, MOTA at each evaluation.

jaxpose train --config configs/staf_quickstart.py --workdir workdirs/staf_quickstart
jaxpose eval --config configs/staf_quickstart.py --workdir workdirs/staf_quickstart

A small STAF model (`jaxpose.models.staf`: a quarter-width MobileNet
backbone, 32-channel stages) learns heatmaps, PAFs and TAFs from pairs of
consecutive 96x96 frames of generated clips (`config.data.source =
'synthetic_clips'`), clips of 2 to 4 walkers where two cross, others enter or
leave, some walk behind occluders, shown at the full frame rate, at half or
at a quarter of it (each clip draws one). Each evaluation tracks the people
of held-out clips with the TAFs and with OKS and logs both MOTAs
(eval/mota_taf_step1, eval/mota_oks_step1, and at frame_step 4).

Its 5500 steps take about 40 minutes on a 2-core CPU: the first 4000 at a
96x96 input (0.22 s a step), the last 1500 with the frames enlarged to
160x160 (0.67 s a step; `jaxpose.training.progressive`), where the maps' 8-pixel
cells become narrower than PoseTrack's match radius. The same 2500 steps at
160x160 alone left the TAFs silent (BENCHMARKS.md, "STAF tracking").
"""

import ml_collections

from jaxpose import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(dict(
      arch='staf', num_refinement_stages=1, num_channels=32, num_heatmaps=19, num_pafs=38,
      num_taf_links=33, taf_channels=32, num_taf_blocks=2, backbone_width=0.25))
  config.parallel = 'none'
  # The frames are enlarged for the last steps: at 96x96 the 8-pixel cells of
  # the maps are wider than PoseTrack's match radius (half a head size, 2-3 px
  # here), and a model trained there found few keypoints within it
  # (BENCHMARKS.md). The first steps learn the features at 96x96, 3x cheaper.
  config.input_size = (160, 160)
  config.input_size_schedule = ((4000, (96, 96)),)
  config.sigma = 6.0  # at 160x160 (3.6 at 96x96); Lightweight OpenPose: 7 at 368
  config.paf_thickness = 1.0  # map cells, also the TAFs' half-width
  config.optimizer = 'adam'
  config.learning_rate = 2e-3
  config.warmup_steps = 50
  config.batch_size = 8
  config.num_train_steps = 5500
  config.lr_decay_steps = (4700,)
  config.log_every_steps = 25
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 500
  config.best_metric = 'mota_taf'
  config.best_mode = 'max'
  config.data.source = 'synthetic_clips'
  # Generated limbs keep their colours when mirrored: a flip would teach
  # contradictory left/right cues (as configs/quickstart.py).
  config.data.flip = False
  config.data.image_size = (96, 96)
  config.data.max_people = 4
  config.data.clip_length = 8
  config.data.clip_frame_steps = (1, 2, 4)
  config.data.num_train_examples = 4000  # clips: 28000 pairs of frames
  config.data.num_eval_examples = 16
  config.data.track_eval_clips = 8
  config.data.track_eval_frame_steps = (1, 4)
  # MOTA of the keypoints scored >= 0.7: where the OKS tracker's MOTA (the
  # baseline's, not the fields') peaked on 8 training clips, over 0-0.7
  # (BENCHMARKS.md); AP counts all keypoints.
  config.data.track_keypoint_threshold = 0.7
  return config
