"""`jaxpose eval --config C --workdir W`: a trained model's COCO AP or MPII PCKh on the eval split.

  jaxpose eval --config configs/hourglass_coco.py --workdir workdirs/hg_coco \
      --config.data.coco_dir=/data/coco [--detections=person_detections.json]

The checkpoint (`checkpoint.restore_variables`) gives the model, its approach
gives the protocol (`approaches.TopDown.evaluate`: person boxes from the
ground truth, a detections file or a bottom-up model's people, crops, flip test, rescoring, OKS-NMS, COCO
AP or MPII PCKh; `approaches.BottomUp.evaluate`: upstream's val.py over each
whole image, COCO AP), and the config gives the data (`sources.split_files`:
the eval annotations and images) and the input size.

COCO results go to `W/eval/results_step{N}.json`; the metrics come back with
the keys of `jaxpose score` (COCO) or of `pck.pckh_summary` (MPII), and 'step'.

A STAF model is evaluated as a tracker instead (`evaluate_tracking`): on
held-out generated clips (config.data.track_eval_clips at each of
config.data.track_eval_frame_steps) or on a PoseTrack18 annotation file and
its images, PoseTrack's MOTA of TAF tracking and of OKS tracking of the same
people, and their AP (`approaches.staf_tracking`).
"""

from collections.abc import Callable
import dataclasses
import os

import ml_collections
import numpy as np

from jaxpose import approaches, models
from jaxpose.training import checkpoint
from jaxpose.deploy import predictor as predictor_lib
from jaxpose.approaches import staf_tracking
from jaxpose.data import posetrack, sources

# The model as the approach's protocol calls it: images -> the last stage's
# maps (top-down: uint8 crops [B, h, w, 3] -> heatmaps [B, h', w', J];
# bottom-up: float32 pixels [1, H, W, 3] -> (heatmaps, pafs)).
ModelFn = Callable[[np.ndarray], object]


def _restore(config: ml_collections.ConfigDict, workdir: str, step: int | None
             ) -> tuple[predictor_lib.JaxPredictor, int]:
  """Workdir -> (a jitted predictor of its model, step); raises if the model is not the config's."""
  variables, description, step = _restore_variables(config, workdir, step)
  model = predictor_lib.JaxPredictor.from_variables(variables, description, source=workdir)
  return model, step


def _restore_variables(config: ml_collections.ConfigDict, workdir: str, step: int | None
                       ) -> tuple[dict, dict, int]:
  """Workdir -> (variables, model description, step); raises if the model is not the config's."""
  variables, description = checkpoint.restore_variables(workdir, step)
  if models.model_class(description) is not models.model_class(config.model):
    raise ValueError(f'{workdir}: the checkpoint holds a {description.get("arch")!r} model, '
                     f'but config.model.arch is {config.model.get("arch")!r}')
  if description.get('num_joints') != config.model.get('num_joints'):
    raise ValueError(f'{workdir}: the checkpoint\'s model has {description.get("num_joints")} '
                     f'joints, but config.model.num_joints is {config.model.get("num_joints")}')
  if step is None:
    with checkpoint.Checkpointer(workdir, read_only=True) as checkpointer:
      step = checkpointer.latest_step()
  return variables, description, int(step)


def eval_files(config: ml_collections.ConfigDict) -> sources.DatasetFiles:
  """The eval annotations and images that config.data names (a 'coco' or 'mpii' source); no train paths needed."""
  if config.data.source not in ('coco', 'mpii'):
    raise ValueError(f"config.data.source is {config.data.source!r}: jaxpose eval reads the "
                     "'coco' or 'mpii' annotation files (set --config.data.source and its "
                     'directory)')
  annotations, images = sources.split_files(config, 'eval')
  return sources.DatasetFiles('', '', annotations, images)


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, *,
                     step: int | None = None,
                     options: approaches.EvalOptions = approaches.EvalOptions(),
                     results_file: str | None = None, model_fn: ModelFn | None = None) -> dict:
  """Evaluates the workdir's checkpoint on the config's eval split -> metrics (module docstring).

  Args:
    config: a training config; its data section names the eval files.
    workdir: a workdir of `jaxpose train` or `jaxpose convert`.
    step: the checkpoint step (default: the latest).
    options: detections or a bottom-up model's boxes, flip test, scales,
      protocol (`approaches.EvalOptions`).
    results_file: where the COCO results go (default
      `workdir/eval/results_step{N}.json`).
    model_fn: replaces the restored model (tests): see `ModelFn`; the
      workdir is then not read and the approach is the config's.

  Returns:
    COCO: {'AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm',
    'ARl', 'step'}; MPII: `pck.pckh_summary`'s keys and 'step'.
  """
  files = eval_files(config)
  approach = approaches.for_config(config)
  if model_fn is None:
    model, step = _restore(config, workdir, step)
    approach = model.approach
    model_fn = lambda images: approach.last_maps(model(images))
  step = 0 if step is None else int(step)
  results_file = results_file or os.path.join(workdir, 'eval', f'results_step{step}.json')
  if options.boxes_from and options.person_boxes is None:
    bottom_up = predictor_lib.load_path(options.boxes_from, approaches.BottomUp, '--boxes_from')
    options = dataclasses.replace(
        options, person_boxes=lambda image: bottom_up.approach.person_boxes(bottom_up, image))
  metrics = approach.evaluate(model_fn, config, files, options, results_file)
  return dict(metrics, step=step)


def evaluate_tracking(config: ml_collections.ConfigDict, workdir: str, *,
                      step: int | None = None, posetrack_annotations: str | None = None,
                      posetrack_images: str = '',
                      frames_fn: staf_tracking.FramesFn | None = None
                      ) -> tuple[list[staf_tracking.TrackingResult], dict]:
  """A STAF workdir's tracking: TAF against OKS, PoseTrack's MOTA and AP (module docstring).

  Args:
    config: a STAF training config (its model; its data for generated clips).
    workdir: a workdir of `jaxpose train`.
    step: the checkpoint step (default: the latest).
    posetrack_annotations: a PoseTrack18 annotation file or folder to score
      on, instead of generated clips; its images under `posetrack_images`
      (the folder holding `images/`).
    frames_fn: replaces the restored model on generated clips (tests): a
      clip -> its frames' people; the workdir is then not read.

  Returns:
    (one result per frame step, or the PoseTrack18 one; their
    `staf_tracking.summary` and 'step').
  """
  approach = approaches.for_config(config)
  if not isinstance(approach, approaches.StafBottomUp):
    raise ValueError(f'config.model.arch {config.model.get("arch")!r}: tracking is evaluated '
                     'for STAF models (ones that predict temporal affinity fields)')
  runner = None
  if frames_fn is None:
    variables, description, step = _restore_variables(config, workdir, step)
    runner = approaches.for_description(description).recurrent_runner(
        variables, input_size=tuple(config.input_size))
    frames_fn = lambda clip: runner.video(clip['images'])
  if posetrack_annotations:
    if runner is None:
      raise ValueError('evaluate_tracking: PoseTrack18 is scored with the workdir\'s model')
    videos = posetrack.load_posetrack(posetrack_annotations, posetrack_images)
    results = [staf_tracking.evaluate_posetrack(
        runner, videos, keypoint_threshold=config.data.track_keypoint_threshold)]
  else:
    results = staf_tracking.evaluate_clips(frames_fn, config)
  return results, dict(staf_tracking.summary(results), step=0 if step is None else int(step))
