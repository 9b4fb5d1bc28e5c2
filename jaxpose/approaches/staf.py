"""The STAF approach: `BottomUp` plus temporal affinity fields, trained on pairs of frames, evaluated by MOTA.

STAF (Raaj et al., CVPR 2019; `jaxpose.models.staf`, `jaxpose.codecs.taf`)
is Lightweight OpenPose run frame by frame with a TAF stage that also reads
the previous frame's maps. `StafBottomUp` is `BottomUp` (its people, PAF
decoding and protocols) with what the recurrence changes:

- data: an example is a pair of consecutive frames (t-1, t) of a generated
  clip (`config.data.source = 'synthetic_clips'`); `ClipPairTransform` gives
  both frames the same geometric augmentation and puts the clip's person p
  in people slot p of both, so that the slots pair the same track.
- forward (`forward`, the trainer's hook): frame t-1 runs with no previous
  maps (zeros, a clip's first frame), frame t with frame t-1's last-stage
  heatmaps, PAFs and TAFs, gradients stopped there (the model is trained as
  it runs, one frame at a time, without backpropagation through time).
- loss: OpenPose's staged L2 on both frames' heatmaps and PAFs plus the L2
  of the TAFs against `taf.encode` of the pair, masked as the PAF loss is
  (by both frames' masks).
- host-side evaluation (`host_eval`, after each of the trainer's eval
  passes): MOTA of TAF tracking and of OKS tracking of the same people on
  held-out generated clips (`jaxpose.approaches.staf_tracking`).
"""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose import losses, skeletons
from jaxpose.approaches import base, staf_tracking
from jaxpose.approaches.bottomup import BottomUp
from jaxpose.approaches.protocols import lightweight_openpose
from jaxpose.codecs import paf, taf
from jaxpose.data import augment, geometry, posetrack
from jaxpose.models import staf as models_staf

# Exported inputs of the previous frame's maps: `previous_heatmaps`, `_pafs`, `_tafs`.
PREVIOUS_INPUT_PREFIX = 'previous_'
# Keys of `forward`'s outputs: each frame's outputs by name.
PREVIOUS_FRAME, FRAME = 'previous_frame', 'frame'
# Suffix of the batch fields and targets of frame t-1.
PREV = '_prev'
# Each COCO keypoint's index in the OpenPose-18 layout of the batch.
_COCO_IN_OPENPOSE = np.array([skeletons.OPENPOSE_FROM_COCO.index(k)
                              for k in range(skeletons.COCO.num_keypoints)])


class ClipPairTransform(augment.BottomUpTransform):
  """A window of two frames (`SyntheticClipWindows`) -> both frames' inputs under one augmentation.

  Output, for frame t (and with the suffix `_prev` for frame t-1):
  'image' uint8 [S, S, 3], 'keypoints' float32 [M, 18, 2] (OpenPose-18),
  'visible' float32 [M, 18] (0/1), 'person_mask' bool [M] (the person has a
  keypoint in this frame's input), 'mask' float32 [S / stride, S / stride];
  and 'track_ids' int32 [M], -1 for an empty slot.

  As `BottomUpTransform` (fit, pad, zoom, rotate, mirror), with one draw of
  scale, rotation and flip for both frames; unlike it, a person keeps slot p
  (the window's person p) in both frames even where it is missing from one,
  so that the slots pair each track's keypoints at t-1 and t. A window with
  more people than `max_people` slots is an error (no person is dropped).
  """

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    """Window example (T = 2) -> both frames' input fields (class docstring)."""
    images = np.asarray(element['images'])
    track_ids = np.asarray(element['track_ids'])
    if images.ndim != 4 or images.shape[0] != 2:
      raise ValueError(f'ClipPairTransform: expected the images of 2 frames [2, H, W, 3], got '
                       f'shape {images.shape} (clip {element.get("clip_id")})')
    if len(track_ids) > self.max_people:
      raise ValueError(f'ClipPairTransform: clip {element.get("clip_id")} has {len(track_ids)} '
                       f'people, more than the {self.max_people} slots (config.data.max_people)')
    # Drawn in one fixed order whatever the options, as BottomUpTransform.
    scale = rng.uniform(1 - self.scale_factor, 1 + self.scale_factor)
    rotation = rng.uniform(-self.rotation_degrees, self.rotation_degrees) * (
        rng.random() < self.rotation_probability)
    flip = rng.random() < self.flip_probability
    if not self.augment:
      scale, rotation, flip = 1.0, 0.0, False
    matrix = self._matrix(images.shape[1:3], scale, rotation, flip)
    out = {'track_ids': np.full(self.max_people, -1, np.int32)}
    out['track_ids'][:len(track_ids)] = track_ids
    for frame, suffix in ((0, PREV), (1, '')):
      fields = self._frame(images[frame], element['keypoints'][frame],
                           element['visible'][frame], matrix, flip)
      out.update({name + suffix: value for name, value in fields.items()})
    return out

  def _matrix(self, image_shape: tuple[int, int], scale: float, rotation: float,
              flip: bool) -> np.ndarray:
    """The [2, 3] map from a frame of `image_shape` (H, W) to the input: the whole frame, centred."""
    side = self.input_size
    height, width = image_shape
    centre = np.array([width - 1, height - 1]) / 2
    matrix = geometry.crop_matrix(centre, np.full(2, scale * max(height, width)), (side, side),
                                  rotation)
    if not flip:
      return matrix
    return geometry.compose(geometry.horizontal_flip_matrix(side), matrix)

  def _frame(self, image: np.ndarray, keypoints: np.ndarray, visible: np.ndarray,
             matrix: np.ndarray, flip: bool) -> dict:
    """One frame's image [H, W, 3], COCO keypoints [P, 17, 2], visible [P, 17] -> its fields, slot p = person p."""
    side = self.input_size
    points, labelled = skeletons.openpose_from_coco(np.asarray(keypoints, np.float64),
                                                    np.asarray(visible))
    points = geometry.apply_affine(points, matrix)
    # In the input: the nearest pixel of the point is one of its pixels.
    inside = np.all((points >= -0.5) & (points < side - 0.5), axis=-1)
    shown = (labelled > 0) & inside
    if flip:
      points, shown = points[:, self._flip_permutation], shown[:, self._flip_permutation]
    count = len(points)
    slots = {'keypoints': np.zeros((self.max_people, *points.shape[1:]), np.float32),
             'visible': np.zeros((self.max_people, shown.shape[1]), np.float32),
             'person_mask': np.zeros(self.max_people, bool)}
    slots['keypoints'][:count] = points
    slots['visible'][:count] = shown
    slots['person_mask'][:count] = shown.any(axis=-1)
    return {'image': geometry.warp(image, matrix, (side, side)), **slots,
            'mask': self._mask({}, matrix, np.zeros((0, 4)))}


def coco_from_batch(values: jax.Array, axis: int) -> jax.Array:
  """A batch's OpenPose-18 values, keypoints along `axis` -> COCO-17 (the neck dropped), on the device."""
  return jnp.take(values, _COCO_IN_OPENPOSE, axis=axis)


def _masked_l2(predicted: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, H, W, C] maps, mask [B, H, W] -> sum of ((predicted - target) mask)^2 / 2 / B (as `losses.staged_l2`)."""
  return jnp.sum(jnp.square((predicted - target) * mask[..., None])) / 2 / mask.shape[0]


class StafBottomUp(BottomUp):
  """The recurrent STAF model: per-frame heatmaps and PAFs as `BottomUp`, and TAFs linking frames (module docstring)."""
  name = 'bottom-up STAF'
  # Its people carry their TAFs (`People.links`): TAF tracking by default, OKS on request.
  trackers = ('taf', 'oks')

  # --- data --------------------------------------------------------------------

  def transform(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton,
                train: bool) -> ClipPairTransform:
    """Pairs of frames in a square input (augmented only for training), at config.input_size."""
    del skeleton  # always COCO (check_data)
    data = config.data
    if data.source != 'synthetic_clips':
      raise ValueError(f'config.data.source: the STAF model trains on pairs of frames of '
                       f"'synthetic_clips', got {data.source!r}")
    width, height = config.input_size
    if width != height:
      raise ValueError(f'config.input_size: bottom-up inputs are square, got {width}x{height}')
    return ClipPairTransform(
        width, stride=self.stride, max_people=max(data.max_people, 1),
        augment=train and data.augment, scale_factor=data.scale_factor,
        rotation_degrees=data.rotation_degrees, flip_probability=0.5 if data.flip else 0.0)

  # --- training ----------------------------------------------------------------

  def make_targets(self, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Both frames' 'heatmaps', 'pafs' (`paf.encode`; frame t-1's with `PREV`) and 'tafs' [B, H, W, 66] (`taf.encode`)."""
    size = tuple(config.input_size)
    targets = {}
    for suffix in (PREV, ''):
      targets['heatmaps' + suffix], targets['pafs' + suffix] = paf.encode(
          batch['keypoints' + suffix], batch['visible' + suffix], image_size=size,
          stride=self.stride, sigma=config.sigma, paf_thickness=config.paf_thickness,
          person_mask=batch['person_mask' + suffix])
    people = [coco_from_batch(batch[name + suffix], axis)
              for suffix in (PREV, '') for name, axis in (('keypoints', -2), ('visible', -1))]
    targets['tafs'] = taf.encode(*people, batch['person_mask' + PREV] & batch['person_mask'],
                                 image_size=size, stride=self.stride,
                                 thickness=config.paf_thickness)
    return targets

  def forward(self, model, variables: dict, batch: dict, *, train: bool, mutable=False):
    """Frame t-1 from zeros, then frame t from frame t-1's last maps (gradients stopped) -> {PREVIOUS_FRAME, FRAME}.

    With `mutable`, frame t runs with the BatchNorm statistics frame t-1
    updated, and their final values come back: (outputs, state).
    """
    first = model.apply(variables, self.normalize(batch['image' + PREV]), None, train=train,
                        mutable=mutable)
    if mutable:
      first, state = first
      variables = {**variables, **state}
    previous = jax.lax.stop_gradient(model.previous_of(first))
    second = model.apply(variables, self.normalize(batch['image']), previous, train=train,
                         mutable=mutable)
    if mutable:
      second, state = second
      return {PREVIOUS_FRAME: first, FRAME: second}, state
    return {PREVIOUS_FRAME: first, FRAME: second}

  def _stages(self, outputs: dict) -> list[tuple[jax.Array, jax.Array]]:
    """One frame's outputs by name -> [(heatmaps, pafs)] per stage."""
    stage = self.model_class.STAGE_NAME
    return [(outputs[f'heatmaps_{stage}{i}'], outputs[f'pafs_{stage}{i}'])
            for i in range(self.model.num_stages)]

  def loss(self, outputs, batch: dict, targets: dict, teacher_outputs,
           config: ml_collections.ConfigDict):
    """Both frames' staged L2 plus the TAF L2 -> (loss, {'pose_loss', 'taf_loss'})."""
    del teacher_outputs, config  # no distillation (check_teacher)
    pose_loss = sum(
        losses.staged_l2(self._stages(outputs[key]), targets['heatmaps' + suffix],
                         targets['pafs' + suffix], batch['mask' + suffix])
        for key, suffix in ((PREVIOUS_FRAME, PREV), (FRAME, '')))
    tafs = outputs[FRAME][self.model.last_stage_name('tafs')]
    taf_loss = _masked_l2(tafs, targets['tafs'], batch['mask' + PREV] * batch['mask'])
    return pose_loss + taf_loss, {'pose_loss': pose_loss, 'taf_loss': taf_loss}

  def eval_sums(self, outputs, batch: dict, targets: dict, weight, config) -> dict:
    """Eval-mode outputs, example weights [B] (0 for padding) -> {'loss'} summed over examples."""
    weighted = dict(batch)
    for suffix in (PREV, ''):
      weighted['mask' + suffix] = batch['mask' + suffix] * weight[:, None, None]
    loss, _ = self.loss(outputs, weighted, targets, None, config)
    return {'loss': loss * batch['mask'].shape[0]}

  # --- prediction --------------------------------------------------------------

  def new_video_state(self, network, options: base.Options) -> staf_tracking.RecurrentRunner:
    """A runner of the model on one video: the previous frame's maps, zeros before the first frame.

    `network` must hold the model's variables (a workdir's `JaxPredictor`):
    the recurrent model is run with its previous maps, which a one-input
    ONNX predictor cannot be given.
    """
    variables = getattr(network, 'variables', None)
    if variables is None:
      raise ValueError(f'{getattr(network, "source", "model")}: the recurrent STAF model runs '
                       'from its workdir (--workdir), frame by frame on its own previous maps; '
                       'its ONNX export takes them as inputs (docs/export.md)')
    return self.recurrent_runner(variables, input_size=options.input_size, height=options.height)

  def predict(self, network, images, options: base.Options = base.Options(), boxes=None,
              state=None) -> list[base.People]:
    """Consecutive frames [H, W, 3] uint8 -> each one's People (COCO-17), their TAFs in `People.links`.

    `state` (`new_video_state`) carries the previous frame's maps; without
    it the images start a new video.
    """
    del boxes
    runner = state if state is not None else self.new_video_state(network, options)
    found = []
    for image in images:
      frame = runner(image)
      found.append(dataclasses.replace(frame.people, links=frame))
    return found

  # --- export ------------------------------------------------------------------

  def export_signature(self, input_size, *, nchw: bool = False,
                       last_only: bool = False) -> base.ExportSignature:
    """`images` [N, H, W, 3] and the previous frame's last-stage maps in; every stage's maps and the TAFs out.

    `feedback` says which output feeds which input on the next frame (zeros
    on a clip's first frame); channels last only.
    """
    if nchw:
      raise ValueError('the recurrent STAF model is exported channels last only')
    width, height = self.check_input_size(input_size)
    previous = self.model.previous_shapes(1, height, width)
    inputs = {'images': ('N', height, width, 3)}
    inputs.update({PREVIOUS_INPUT_PREFIX + name: ('N', *previous[name][1:])
                   for name in models_staf.RECURRENT_MAPS})
    return base.ExportSignature(inputs, self._export_outputs(last_only), self._feedback())

  def _feedback(self) -> dict[str, str]:
    """Output name -> the input of the next frame it feeds: `{map}_stage{last}` -> `previous_{map}`."""
    return {self.model.last_stage_name(name): PREVIOUS_INPUT_PREFIX + name
            for name in models_staf.RECURRENT_MAPS}

  def _export_outputs(self, last_only: bool) -> list[str]:
    return list(self._feedback()) if last_only else list(self.model.output_names)

  def export_fn(self, variables: dict, *, nchw: bool = False, last_only: bool = False):
    """forward(images, previous heatmaps, pafs, tafs) -> this frame's outputs, in `export_signature`'s order."""
    if nchw:
      raise ValueError('the recurrent STAF model is exported channels last only')
    model = self.create_model()
    names = self._export_outputs(last_only)

    def forward(images: jax.Array, *previous: jax.Array) -> tuple[jax.Array, ...]:
      outputs = model.apply(variables, self.normalize(images),
                            dict(zip(models_staf.RECURRENT_MAPS, previous, strict=True)),
                            train=False)
      # A copy per output, as `Approach.network_fn` does: the last stage's
      # maps also feed the TAF stage.
      return tuple(jnp.copy(outputs[name]) for name in names)

    return forward

  # --- evaluation --------------------------------------------------------------

  def recurrent_runner(self, variables: dict, input_size: tuple[int, int] | None = None,
                       height: int | None = None) -> staf_tracking.RecurrentRunner:
    """A runner of this model on videos, frame by frame (`staf_tracking.RecurrentRunner`)."""
    return staf_tracking.RecurrentRunner(self, variables, input_size=input_size,
                                         height=height or lightweight_openpose.DEFAULT_HEIGHT)

  def evaluate(self, network, config: ml_collections.ConfigDict, options: base.Options,
               results_file: str) -> dict:
    """Tracking, scored: MOTA of TAF and of OKS tracking, and AP, on held-out clips or `options.posetrack`.

    Prints each result's table per joint to stderr; `results_file` is not
    written (PoseTrack's results are per video).
    """
    del results_file
    runner = self.new_video_state(network, dataclasses.replace(
        options, input_size=tuple(config.input_size)))
    results = self.tracking_results(lambda clip: runner.video(clip['images']), config, options,
                                    runner)
    for result in results if options.share.writes else ():
      print(staf_tracking.tracking_table(result), file=sys.stderr)
    return staf_tracking.summary(results)

  def tracking_results(self, frames_fn: staf_tracking.FramesFn,
                       config: ml_collections.ConfigDict, options: base.Options,
                       runner: staf_tracking.RecurrentRunner | None = None
                       ) -> list[staf_tracking.TrackingResult]:
    """Tracking results of `frames_fn` (a clip -> its frames' people) on held-out clips, or of `runner` on PoseTrack18."""
    if options.posetrack:
      if runner is None:
        raise ValueError('PoseTrack18 is scored with the workdir\'s model')
      videos = posetrack.load_posetrack(options.posetrack, options.posetrack_images)
      return [staf_tracking.evaluate_posetrack(
          runner, videos, keypoint_threshold=config.data.track_keypoint_threshold,
          share=options.share)]
    return staf_tracking.evaluate_clips(frames_fn, config, options.share)

  def host_eval(self, variables: dict, config: ml_collections.ConfigDict) -> dict[str, float]:
    """MOTA of TAF and of OKS tracking, and AP, on config.data.track_eval_clips held-out clips.

    Keys `mota_taf_step{k}`, `mota_oks_step{k}`, `ap_step{k}` for each k of
    config.data.track_eval_frame_steps, and `mota_taf`, `mota_oks` at the
    first of them; none when track_eval_clips is 0.
    """
    if config.data.track_eval_clips <= 0 or not config.data.track_eval_frame_steps:
      return {}
    runner = self.recurrent_runner(variables, input_size=tuple(config.input_size))
    results = staf_tracking.evaluate_clips(lambda clip: runner.video(clip['images']), config)
    return staf_tracking.summary(results)
