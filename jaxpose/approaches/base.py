"""The interface every approach implements (`Approach`), and what its hooks take and give.

`Approach` declares every hook that training, evaluation, inference and
export call, each with one signature; `TopDown`, `BottomUp` and
`StafBottomUp` implement them. Callers hold an `Approach` and never test
which one it is:

  approach = approaches.for_description(description)   # a checkpoint's, or the config's
  targets = approach.make_targets(batch, config)        # the trainer
  people = approach.predict(network, images, options, boxes)   # inference
  signature = approach.export_signature(input_size)     # export
"""

import abc
from collections.abc import Callable, Mapping, Sequence
import types
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose import models, skeletons
from jaxpose.approaches import protocols
from jaxpose.approaches.records import (EvalOptions, ExportSignature, Options, People, Share,
                                        last_output, renamed_protocol)

__all__ = ['Approach', 'EvalOptions', 'ExportSignature', 'Options', 'People', 'last_output',
           'renamed_protocol']

class Approach(abc.ABC):
  """What training, evaluation, inference and export call, whichever approach a model belongs to.

  Built from a model description (`models.model_config`), as checkpoints
  store it. The abstract hooks below are what an approach must define; the
  others have the behaviour of a one-image, stateless model.
  """
  name = 'approach'
  # One example per person (crops around boxes) or per image.
  per_person = False
  # `protocols` modules with this APPROACH can run this approach's models.
  protocol_kind = ''
  # How `jaxpose infer` may link people across frames; the first is the default.
  trackers: tuple[str, ...] = ('oks',)
  # Summed metrics the trainer reports as means per example, beside 'loss'.
  loss_terms: tuple[str, ...] = ()

  def __init__(self, description: Mapping[str, Any]):
    self.description = dict(description)
    self.model_class = models.model_class(self.description)
    # An instance with the description's options, for its derived facts.
    self.model = models.create_model(self.description)
    self.stride = self.model_class.OUTPUT_STRIDE
    self.normalization = models.input_normalization(self.description)

  # --- the model ---------------------------------------------------------------

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

  # --- data --------------------------------------------------------------------

  @abc.abstractmethod
  def check_data(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton) -> None:
    """Raises ValueError unless this model can learn the keypoints of config.data (`skeleton`)."""

  @abc.abstractmethod
  def transform(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton,
                train: bool):
    """The grain transform of config.data's examples into model inputs (augmented only for training)."""

  # --- training ----------------------------------------------------------------

  def forward(self, model, variables: dict, batch: dict, *, train: bool, mutable=False):
    """The network on a batch, as the trainer runs it: outputs, or (outputs, mutated state) with `mutable`.

    One image per example: `model.apply` on the normalised `batch['image']`;
    a recurrent approach (STAF) runs its frames in turn.
    """
    return model.apply(variables, self.normalize(batch['image']), train=train, mutable=mutable)

  @abc.abstractmethod
  def make_targets(self, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Encodes the batch's joint coordinates into the training targets, on the device (jittable)."""

  @abc.abstractmethod
  def loss(self, outputs, batch: dict, targets: dict, teacher_outputs,
           config: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """Outputs of `forward` -> (the scalar loss, {name: scalar} of its parts, as sums over the batch's mean)."""

  @abc.abstractmethod
  def train_metrics(self, outputs, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Outputs of a train step -> {name: scalar} summed metrics (`summarize` turns them into values)."""

  @abc.abstractmethod
  def eval_sums(self, outputs, batch: dict, targets: dict, weight: jax.Array,
                config: ml_collections.ConfigDict) -> dict:
    """Eval-mode outputs, example weights [B] (0 for padding) -> {name: sum over the examples}, 'loss' among them."""

  def summarize(self, sums: Mapping[str, Any], examples: float = 1.0) -> dict[str, float]:
    """Summed metrics of a pass (eval: over `examples`; training: means over steps, `examples` 1) -> reported values.

    'loss' and `loss_terms` per example; an approach adds its own (TopDown: PCK).
    """
    return {key: float(np.sum(sums[key]) / max(examples, 1))
            for key in ('loss', *self.loss_terms) if key in sums}

  def host_eval(self, variables: dict, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Metrics computed on the host after the trainer's eval pass (STAF: MOTA); none here."""
    del variables, config
    return {}

  def check_teacher(self, teacher_description: dict, source: str) -> None:
    """Raises ValueError unless a teacher of this description can distil into this model (none by default)."""
    raise ValueError(f'config.teacher: distillation is defined for top-down students, not '
                     f'{self.description["arch"]!r} ({source})')

  # --- prediction --------------------------------------------------------------

  def protocol(self, options: 'Options') -> types.ModuleType:
    """The protocol `options` names, else the model's default (`protocols.DEFAULT_FOR_ARCH`); ValueError if not this approach's."""
    module = (protocols.named(options.protocol) if options.protocol
              else protocols.default_for(self.description))
    if module.APPROACH != self.protocol_kind:
      names = [name for name, m in protocols.PROTOCOLS.items()
               if m.APPROACH == self.protocol_kind]
      raise ValueError(f'--protocol {module.NAME} is a {module.APPROACH} protocol, but '
                       f'{self.description["arch"]!r} is a {self.name} model: use one of '
                       f'{", ".join(names)}')
    return module

  @abc.abstractmethod
  def last_maps(self, outputs: dict[str, np.ndarray]):
    """Named outputs -> the last stage's maps, as the protocols take them."""

  @abc.abstractmethod
  def predict(self, network, images: Sequence[np.ndarray], options: Options,
              boxes: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
              state: Any = None) -> list[People]:
    """A batch of RGB images [H, W, 3] uint8 -> each one's People, in image pixels.

    `network`: a `deploy.predictor.Predictor` of this model (uint8 images
    [N, H, W, 3] -> named outputs). `boxes`: per image (boxes [P, 4] x, y,
    w, h; scores [P]) for a top-down approach. `state`: a video's state from
    `new_video_state`, updated in place frame by frame (the images are then
    consecutive frames).
    """

  def skeleton(self, network=None) -> skeletons.Skeleton:
    """The keypoint layout of the people `predict` gives: the one the model description records, else COCO-17."""
    return models.layout(self.description) or skeletons.COCO

  def person_boxes(self, network, image: np.ndarray, options: Options = Options()
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Image [H, W, 3] -> person boxes [P, 4] (x, y, w, h) and scores [P] for a top-down model; a bottom-up model's."""
    del network, image, options
    raise ValueError(f'{self.description["arch"]!r} is a {self.name} model: it needs person '
                     'boxes itself and cannot give them (use a bottom-up model)')

  def new_video_state(self, network, options: Options) -> Any:
    """What a video needs carried from frame to frame (STAF: the previous frame's maps); empty here."""
    del network, options
    return {}

  # --- evaluation --------------------------------------------------------------

  @abc.abstractmethod
  def evaluate(self, network, config: ml_collections.ConfigDict, options: Options,
               results_file: str) -> dict:
    """The eval split of config.data -> its metrics (COCO AP, MPII PCKh, tracking MOTA), results to `results_file`."""

  def tracking_results(self, frames_fn, config: ml_collections.ConfigDict, options: Options,
                       runner=None) -> list:
    """Tracking scored on held-out clips or PoseTrack18 (STAF); a model without temporal fields has none."""
    del frames_fn, config, options, runner
    raise ValueError(f'{self.description["arch"]!r} is a {self.name} model: tracking is '
                     'evaluated for STAF models (ones that predict temporal affinity fields)')

  # --- export ------------------------------------------------------------------

  def output_names(self, last_only: bool = False) -> list[str]:
    """Names of the network's outputs in order (the ONNX interface); `last_only`: the last stage's."""
    names = models.output_names(self.model)
    return names[-len(self.model_class.OUTPUT_MAPS):] if last_only else names

  def export_signature(self, input_size: tuple[int, int], *, nchw: bool = False,
                       last_only: bool = False) -> ExportSignature:
    """The exported graph's inputs and outputs at `input_size` (width, height): RGB pixels in, named maps out."""
    width, height = self.check_input_size(input_size)
    shape = ('N', 3, height, width) if nchw else ('N', height, width, 3)
    return ExportSignature({'images': shape}, self.output_names(last_only))

  def export_fn(self, variables: dict, *, nchw: bool = False, last_only: bool = False
                ) -> Callable[..., tuple[jax.Array, ...]]:
    """The eval-mode network with `export_signature`'s inputs, in order -> its outputs, in order."""
    return self.network_fn(variables, nchw=nchw, last_only=last_only)

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
