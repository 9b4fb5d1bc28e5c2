"""What the two approaches share: the network of a model description, from pixels to named maps."""

from collections.abc import Callable, Mapping
import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import models


class Approach:
  """The network side of an approach: model, input normalisation, output stride and names.

  `TopDown` and `BottomUp` add what differs between them (targets, loss,
  metrics, data, decoding, evaluation, prediction). Built from a model
  description (`models.model_config`), as checkpoints store it.
  """
  name = 'approach'
  # One example per person (crops around boxes) or per image.
  per_person = False

  def __init__(self, description: Mapping[str, Any]):
    self.description = dict(description)
    self.model_class = models.model_class(self.description)
    # An instance with the description's options, for its derived facts.
    self.model = models.create_model(self.description)
    self.stride = self.model_class.OUTPUT_STRIDE
    self.normalization = models.input_normalization(self.description)

  def create_model(self, **runtime):
    """The described model; `runtime` adds e.g. axis_name='batch', compute_dtype=jnp.bfloat16."""
    return models.create_model(self.description, **runtime)

  def normalize(self, images: jax.Array) -> jax.Array:
    """RGB pixels [..., H, W, 3] -> the model's float32 input, as its weights were trained."""
    return self.normalization.normalize(images)

  @property
  def input_multiple(self) -> int:
    """Input height and width must be multiples of this."""
    return self.model.input_multiple

  @property
  def default_input_size(self) -> tuple[int, int]:
    """(width, height) of the input when none is given (export, inference): the size it was trained at."""
    return models.trained_input_size(self.description)

  def check_input_size(self, input_size, what: str = 'input_size') -> tuple[int, int]:
    """(width, height) -> itself as ints; ValueError naming `what` unless both are positive multiples of the model's."""
    width, height = (int(s) for s in input_size)
    multiple = self.input_multiple
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
      raise ValueError(f'{what}: {self.description["arch"]} needs a width and height that are '
                       f'positive multiples of {multiple}, got {width}x{height} (W x H)')
    return width, height

  def forward(self, model, variables: dict, batch: dict, *, train: bool, mutable=False):
    """The network on a batch, as the trainer runs it: outputs, or (outputs, mutated state) with `mutable`.

    One image per example: `model.apply` on the normalised `batch['image']`;
    a recurrent approach (STAF) runs its frames in turn.
    """
    return model.apply(variables, self.normalize(batch['image']), train=train, mutable=mutable)

  def host_eval(self, variables: dict, config) -> dict[str, float]:
    """Metrics computed on the host after the trainer's eval pass (STAF: MOTA); none here."""
    del variables, config
    return {}

  def output_names(self, last_only: bool = False) -> list[str]:
    """Names of the network's outputs in order (the ONNX interface); `last_only`: the last stage's."""
    names = models.output_names(self.model)
    return names[-len(self.model_class.OUTPUT_MAPS):] if last_only else names

  def network_fn(self, variables: dict, *, nchw: bool = False, last_only: bool = False,
                 compute_dtype: Any = None) -> Callable[[jax.Array], tuple[jax.Array, ...]]:
    """The eval-mode network: RGB pixels [N, H, W, 3] -> float32 outputs [N, h, w, C], in `output_names` order.

    What export writes and what the predictors run (in float32), and a
    distillation teacher (in the student's `compute_dtype`). With `nchw`,
    images [N, 3, H, W] -> outputs [N, C, h, w].
    """
    model = self.create_model(compute_dtype=compute_dtype)
    count = len(self.output_names(last_only))

    def forward(images: jax.Array) -> tuple[jax.Array, ...]:
      if nchw:
        images = jnp.transpose(images, (0, 2, 3, 1))
      outputs = models.flat_outputs(model.apply(variables, self.normalize(images), train=False),
                                     self.output_names())
      outputs = outputs[-count:]
      if nchw:
        outputs = [jnp.transpose(maps, (0, 3, 1, 2)) for maps in outputs]
      # jax2onnx 0.17.1 folds inverse Transpose pairs without counting graph
      # outputs as consumers: an intermediate stack's heatmaps, which also feed
      # the next stack, would lose the Transpose that produces the graph output
      # and leave it dangling. A copy (an ONNX Identity) gives every output a
      # node of its own.
      return tuple(jnp.copy(maps) for maps in outputs)

    return forward



def last_output(outputs: Mapping[str, Any], map_name: str):
  """Named outputs (`map_name`_stack<i> or _stage<i>, all or the last only) -> the last stage's."""
  pattern = re.compile(rf'{map_name}_[a-z]+(\d+)')
  indices = {int(match.group(1)): name for name in outputs
             if (match := pattern.fullmatch(name))}
  if not indices:
    raise ValueError(f'model outputs: none named {map_name}_stage<i> or _stack<i>, got '
                     f'{sorted(outputs)}')
  return outputs[indices[max(indices)]]


@dataclasses.dataclass
class People:
  """One image's people: keypoints [P, J, 2] image pixels, keypoint scores [P, J], boxes [P, 4] (x, y, w, h), scores [P]."""
  keypoints: np.ndarray
  keypoint_scores: np.ndarray
  boxes: np.ndarray
  scores: np.ndarray


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How `jaxpose eval` runs a model over an eval split.

  Attributes:
    detections: COCO results-format person boxes (top-down COCO); None uses
      the ground-truth boxes.
    detection_threshold: detections scored lower are dropped.
    flip_test: average with the mirrored crops' heatmaps (top-down).
    scales: bottom-up input scales whose maps are averaged (val.py's
      `--multiscale`: `bottomup.MULTISCALE`); None: the protocol's own
      (val.py (1,), body.py (0.5,), of a 368-pixel input height).
    mpii_protocol: top-down MPII: 'jaxpose' (HRNet's boxes, jaxpose's crop
      and flip test, sub-pixel joints, PCKh at <= 0.5) or 'bearpaw'
      (bearpaw/pytorch-pose's `example/main.py -e` and `eval_PCKh.py`:
      `approaches.topdown_bearpaw`).
    coco_protocol: top-down COCO: 'jaxpose' or 'mmpose' (mmpose's box, crop,
      shifted flip test, decoding, rescoring, OKS-NMS and results, as its
      CocoMetric scores its checkpoints: `approaches.topdown_mmpose`).
    dark_kernel: top-down, jaxpose's protocol: decode heatmaps with DARK and
      this blur kernel (`heatmap.decode`; 11 for sigma-2 targets).
    boxes_from: top-down COCO: a bottom-up model (workdir or .onnx) whose
      people give the person boxes (`BottomUp.person_boxes`), OKS-NMS after,
      as with detections; `jaxpose.evaluation` loads it into `person_boxes`.
    person_boxes: image [H, W, 3] -> (boxes [P, 4] x, y, w, h; scores [P]).
  """
  detections: str | None = None
  detection_threshold: float = 0.0
  flip_test: bool = True
  scales: tuple[float, ...] | None = None
  mpii_protocol: str = 'jaxpose'
  coco_protocol: str = 'jaxpose'
  dark_kernel: int | None = None
  boxes_from: str | None = None
  person_boxes: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
