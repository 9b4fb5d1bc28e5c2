"""`jaxpose eval --config C --workdir W`: a trained model's COCO AP, MPII PCKh or tracking MOTA on the eval split.

  jaxpose eval --config configs/hourglass_coco.py --workdir workdirs/hg_coco \
      --config.data.coco_dir=/data/coco [--detections=person_detections.json] [--protocol NAME]

The checkpoint (`checkpoint.restore_variables`) gives the model, and the
model's approach evaluates it (`Approach.evaluate`) with the protocol the
options name, by default its arch's (`approaches.protocols`): top-down,
person boxes from the ground truth, a detections file or a bottom-up model's
people, then the protocol's crops, flip test, decoding, rescoring and
OKS-NMS, COCO AP or MPII PCKh; bottom-up, the protocol's whole-image
inference (val.py, body.py), COCO AP; STAF, tracking on held-out generated
clips or a PoseTrack18 file, PoseTrack's MOTA of TAF and of OKS tracking and
their AP. The config gives the data (`sources.eval_files`: the eval
annotations and images) and the input size.

COCO results go to `W/eval/results_step{N}.json`; the metrics come back with
the keys of `jaxpose score` (COCO), of `pck.pckh_summary` (MPII) or of
`staf_tracking.summary` (tracking), and 'step'.
"""

from collections.abc import Callable
import dataclasses
import os

import ml_collections
import numpy as np

from jaxpose import approaches, models
from jaxpose.approaches import staf_tracking
from jaxpose.deploy import predictor as predictor_lib
from jaxpose.training import checkpoint

# A stand-in for the restored model (tests): images -> the last stage's maps
# (top-down: uint8 crops [B, h, w, 3] -> heatmaps [B, h', w', J]; bottom-up:
# float32 pixels [1, H, W, 3] -> (heatmaps, pafs)).
ModelFn = Callable[[np.ndarray], object]


class _LastMapsNetwork:
  """A `ModelFn` as a predictor: its maps named as the approach's last-stage outputs."""

  def __init__(self, model_fn: ModelFn, approach: approaches.Approach):
    self.model_fn = model_fn
    self.names = approach.output_names(last_only=True)
    self.source = '<model_fn>'
    self.input_size = None
    self.input_multiple = approach.input_multiple

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    maps = self.model_fn(images)
    maps = maps if isinstance(maps, (tuple, list)) else (maps,)
    return dict(zip(self.names, maps, strict=True))


def restore_variables(config: ml_collections.ConfigDict, workdir: str, step: int | None
                      ) -> tuple[dict, dict, int]:
  """Workdir -> (variables, model description, step); raises if the model is not the config's."""
  # The step read, which is not the latest when that one was unreadable.
  variables, description, step = checkpoint.restore_variables_and_step(workdir, step)
  if models.model_class(description) is not models.model_class(config.model):
    raise ValueError(f'{workdir}: the checkpoint holds a {description.get("arch")!r} model, '
                     f'but config.model.arch is {config.model.get("arch")!r}')
  expected = approaches.for_config(config).description.get('num_joints')
  if description.get('num_joints') != expected:
    raise ValueError(f'{workdir}: the checkpoint\'s model has {description.get("num_joints")} '
                     f'joints, but config.model.num_joints is {expected} (the data\'s where '
                     'it is 0)')
  return variables, description, int(step)


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, *,
                     step: int | None = None,
                     options: approaches.Options = approaches.Options(),
                     results_file: str | None = None, model_fn: ModelFn | None = None) -> dict:
  """Evaluates the workdir's checkpoint on the config's eval split -> metrics (module docstring).

  Args:
    config: a training config; its data section names the eval files.
    workdir: a workdir of `jaxpose train` or `jaxpose convert`.
    step: the checkpoint step (default: the latest).
    options: the protocol, detections or a bottom-up model's boxes, flip
      test, scales, PoseTrack file (`approaches.Options`).
    results_file: where the COCO results go (default
      `workdir/eval/results_step{N}.json`).
    model_fn: replaces the restored model (tests): see `ModelFn`; the
      workdir is then not read and the approach is the config's.

  Returns:
    COCO: {'AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm',
    'ARl', 'step'}; MPII: `pck.pckh_summary`'s keys and 'step'; STAF:
    `staf_tracking.summary`'s and 'step'.
  """
  if model_fn is None:
    variables, description, step = restore_variables(config, workdir, step)
    network = predictor_lib.JaxPredictor.from_variables(variables, description, source=workdir)
  else:
    network = _LastMapsNetwork(model_fn, approaches.for_config(config))
  approach = network.approach if model_fn is None else approaches.for_config(config)
  step = 0 if step is None else int(step)
  results_file = results_file or os.path.join(workdir, 'eval', f'results_step{step}.json')
  if options.boxes_from and options.person_boxes is None:
    bottom_up = predictor_lib.load_path(options.boxes_from, '--boxes_from', whole_images=True)
    options = dataclasses.replace(
        options, person_boxes=lambda image: bottom_up.approach.person_boxes(bottom_up, image))
  metrics = approach.evaluate(network, config, options, results_file)
  return dict(metrics, step=step)


def evaluate_tracking(config: ml_collections.ConfigDict, workdir: str, *,
                      step: int | None = None,
                      options: approaches.Options = approaches.Options(),
                      frames_fn: staf_tracking.FramesFn | None = None
                      ) -> tuple[list[staf_tracking.TrackingResult], dict]:
  """A STAF workdir's tracking results, one per frame step or the PoseTrack18 one, and their summary with 'step'.

  `frames_fn` replaces the restored model on generated clips (tests): a clip
  -> its frames' people; the workdir is then not read. A model that is not
  STAF's raises ValueError (its approach has no tracking to score).
  """
  approach = approaches.for_config(config)
  runner = None
  if frames_fn is None:
    variables, description, step = restore_variables(config, workdir, step)
    approach = approaches.for_description(description)
    runner = approach.new_video_state(
        predictor_lib.JaxPredictor.from_variables(variables, description, source=workdir),
        dataclasses.replace(options, input_size=tuple(config.input_size)))
    frames_fn = lambda clip: runner.video(clip['images'])
  results = approach.tracking_results(frames_fn, config, options, runner)
  return results, dict(staf_tracking.summary(results), step=0 if step is None else int(step))
