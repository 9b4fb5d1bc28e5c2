"""The bottom-up approach: whole images -> keypoint heatmaps and part affinity fields -> people.

`BottomUp` owns what differs from top-down: keypoint maps and PAF targets
(`codecs.paf`), OpenPose's staged L2 loss, per-image sources and their
augmentation, and prediction and COCO evaluation through a bottom-up
protocol (`approaches.protocols`): Lightweight OpenPose's demo and val.py
(`lightweight_openpose`, the default of models trained here) or CMU
OpenPose's PyTorch port's body.py (`cmu_openpose`, the CMU model's). People
come out in COCO-17 order, converted from the OpenPose-18 layout the maps
are in.
"""

import sys

import ml_collections
import numpy as np
import tqdm

from jaxpose import losses, models, skeletons
from jaxpose.approaches import base
from jaxpose.approaches.protocols import lightweight_openpose
from jaxpose.codecs import paf, paf_grouping
from jaxpose.data import augment, coco, geometry, sources
from jaxpose.data.images import read_image
from jaxpose.metrics import coco_ap
from jaxpose.metrics.oks import boxes_from_keypoints

# Bottom-up people with fewer COCO keypoints give no top-down box (`person_boxes`).
PERSON_BOX_MIN_KEYPOINTS = 4


class BottomUp(base.Approach):
  """Lightweight OpenPose and its kin: whole images -> per-stage (heatmaps, PAFs) [B, H/8, W/8, C].

  COCO's people are learnt in OpenPose's 18-keypoint layout (a neck added)
  and come out as COCO-17. A model of another layout (its description's
  `skeleton`) learns its K keypoints and its limbs as they are: K + 1
  heatmaps, 2 L fields, grouped by `paf_grouping.layout_for` its limbs.
  """
  name = 'bottom-up'
  per_person = False
  protocol_kind = 'bottom-up'

  def __init__(self, description):
    super().__init__(description)
    recorded = models.layout(self.description)
    # The layout the model learns when it is not COCO (None: OpenPose-18 from COCO-17).
    self.custom_layout = None if recorded in (None, skeletons.COCO) else recorded
    self.paf_layout = (paf_grouping.OPENPOSE_LAYOUT if self.custom_layout is None else
                       paf_grouping.layout_for(self.custom_layout.limbs,
                                               self.custom_layout.num_keypoints))

  # --- data --------------------------------------------------------------------

  def check_data(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton) -> None:
    """Raises ValueError unless the model learns the dataset's layout: COCO's (as OpenPose-18), or the one it was built for."""
    if skeleton is skeletons.COCO and self.custom_layout is None:
      return
    if self.custom_layout is None or self.custom_layout != skeleton:
      raise ValueError(f'config.model.arch {config.model.arch!r} learns COCO keypoints (its '
                       f'published weights and fields are those of OpenPose-18), but '
                       f'{sources.named_data(config)} has the {skeleton.num_keypoints} '
                       f'{skeleton.name} keypoints')

  def transform(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton,
                train: bool) -> augment.BottomUpTransform:
    """The whole image in a square input (augmented only for training), at config.input_size."""
    del skeleton  # COCO's, or the model's own (check_data)
    data = config.data
    width, height = config.input_size
    if width != height:
      raise ValueError(f'config.input_size: bottom-up inputs are square, got {width}x{height}')
    return augment.BottomUpTransform(
        width, stride=self.stride, max_people=max(data.max_people, 1),
        augment=train and data.augment, scale_factor=data.scale_factor,
        rotation_degrees=data.rotation_degrees, flip_probability=0.5 if data.flip else 0.0,
        skeleton=self.custom_layout)

  # --- training ----------------------------------------------------------------

  def make_targets(self, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Keypoints [B, P, 18, 2] -> {'heatmaps' [B, H, W, 19], 'pafs' [B, H, W, 38]}, on the device."""
    limbs = None if self.custom_layout is None else self.custom_layout.limbs
    heatmaps, pafs = paf.encode(batch['keypoints'], batch['visible'],
                                image_size=tuple(config.input_size), stride=self.stride,
                                sigma=config.sigma, paf_thickness=config.paf_thickness,
                                person_mask=batch['person_mask'], limbs=limbs)
    return {'heatmaps': heatmaps, 'pafs': pafs}

  def loss(self, outputs, batch: dict, targets: dict, teacher_outputs,
           config: ml_collections.ConfigDict):
    """Stages of (heatmaps, pafs) -> (OpenPose's masked staged L2, no extra metrics)."""
    del teacher_outputs, config  # no distillation (check_teacher)
    return losses.staged_l2(outputs, targets['heatmaps'], targets['pafs'], batch['mask']), {}

  def train_metrics(self, outputs, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """No metric beyond the loss while training."""
    del outputs, batch, config
    return {}

  def eval_sums(self, outputs, batch: dict, targets: dict, weight, config) -> dict:
    """Eval-mode stages, example weights [B] (0 for padding) -> {'loss'} summed over examples."""
    del config
    mask = batch['mask'] * weight[:, None, None]
    return {'loss': losses.staged_l2(outputs, targets['heatmaps'], targets['pafs'], mask)
            * batch['mask'].shape[0]}


  # --- prediction --------------------------------------------------------------

  def last_maps(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Named outputs -> the last stage's (heatmaps, pafs)."""
    return lightweight_openpose.last_maps(outputs)

  def predict(self, network, images, options: base.Options = base.Options(), boxes=None,
              state=None) -> list[base.People]:
    """Images [H, W, 3] uint8 -> each one's People (COCO-17): the protocol's inference at `options.height`.

    Lightweight OpenPose: upstream's demo; CMU OpenPose: its port's body.py at
    the scale height / 368. Boxes and state are not used (stateless, whole images).
    """
    del boxes, state
    protocol = self.protocol(options)
    height = options.height or protocol.DEFAULT_HEIGHT
    maps_fn = lambda inputs: self.last_maps(network(inputs))
    found = []
    for image in images:
      people, person_scores = protocol.predict(maps_fn, image, height, self.stride,
                                               network.input_multiple, network.input_size,
                                               **self._decode_options(protocol))
      found.append(self.people(people, person_scores))
    return found

  def protocol(self, options: base.Options):
    """As `Approach.protocol`; a model of another layout defaults to lightweight_openpose, whose grouping takes any limbs."""
    if self.custom_layout is not None and options.protocol is None:
      return lightweight_openpose
    return super().protocol(options)

  def _decode_options(self, protocol) -> dict:
    """What a protocol's decoding needs of a model of another layout: its grouping (`paf.decode`'s layout)."""
    if self.custom_layout is None:
      return {}
    if protocol is not lightweight_openpose:
      raise ValueError(f'--protocol {protocol.NAME} groups OpenPose-18 people; a model of the '
                       f'{self.custom_layout.name} layout runs with lightweight_openpose')
    return {'layout': self.paf_layout}

  def people(self, people: np.ndarray, person_scores: np.ndarray, links=None) -> base.People:
    """Decoded people [P, K, 3] (x, y, score), scores [P] -> People: COCO-17 from OpenPose-18, else as they are.

    Person scores are val.py's (`lightweight_openpose.coco_keypoints`).
    """
    keypoints, scores, coco_scores = lightweight_openpose.coco_keypoints(
        people, person_scores, custom=self.custom_layout is not None)
    boxes = boxes_from_keypoints(keypoints, scores, score_threshold=0.0)
    return base.People(keypoints, scores, boxes.astype(np.float32), coco_scores, links)

  def person_boxes(self, network, image: np.ndarray, options: base.Options = base.Options(),
                   min_keypoints: int = PERSON_BOX_MIN_KEYPOINTS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Image [H, W, 3] -> person boxes [P, 4] (x, y, w, h) and scores [P] for a top-down model.

    The people `predict` finds with `min_keypoints` COCO keypoints or more:
    their keypoints' extent enlarged about its centre by `geometry.BOX_PADDING`
    (1.25), as the top-down protocol pads a box (the bundled COCO sample's
    person boxes are 1.26x / 1.21x their keypoints' extent in width / height,
    medians over its 12 people with 8 keypoints or more), scored by the mean
    of the found keypoints' scores (heatmap values, about 0-1).
    """
    people = self.predict(network, [image], options)[0]
    found = people.keypoint_scores > 0
    keep = found.sum(-1) >= min_keypoints
    extent = people.boxes[keep]
    size = extent[:, 2:] * geometry.BOX_PADDING
    boxes = np.concatenate([extent[:, :2] + extent[:, 2:] / 2 - size / 2, size], -1)
    scores = (people.keypoint_scores[keep].sum(-1) /
              np.maximum(found[keep].sum(-1), 1)).astype(np.float32)
    return boxes.astype(np.float32), scores

  # --- evaluation --------------------------------------------------------------

  def evaluate(self, network, config: ml_collections.ConfigDict, options: base.Options,
               results_file: str) -> dict:
    """Every COCO eval image, the protocol at `options.scales` (default its own) -> COCO AP (results to `results_file`).

    val.py's protocol, or body.py's for CMU OpenPose (`protocols.cmu_openpose`).
    """
    self.check_data(config, sources.data_skeleton(config))
    protocol = self.protocol(options)
    scales = options.scales or protocol.DEFAULT_SCALES
    files = sources.eval_files(config)
    maps_fn = lambda inputs: self.last_maps(network(inputs))
    per_image = []  # this process's images (`options.share`), gathered below
    decode_options = self._decode_options(protocol)
    paths = coco.image_paths(files.eval_annotations, files.eval_images)
    for image_id, path in tqdm.tqdm(options.share.take(paths), desc='eval', unit='image',
                                    file=sys.stderr):
      image = read_image(path, image_id)
      keypoints, keypoint_scores, scores = protocol.coco_people(maps_fn, image, scales,
                                                                self.stride, **decode_options)
      per_image.append(coco_ap.coco_results(np.full(len(scores), image_id), keypoints,
                                            keypoint_scores, scores))
    results = [result for image in options.share.gather(per_image) for result in image]
    sigmas = None if self.custom_layout is None else self.custom_layout.sigmas
    return coco_ap.score_or_zero(files.eval_annotations, results,
                                 results_file if options.share.writes else None, sigmas)
