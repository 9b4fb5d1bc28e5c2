"""A STAF model on a video, frame by frame: each frame's people and temporal affinity fields.

`RecurrentRunner` runs the recurrent model (`jaxpose.models.staf`) on a
video one frame at a time, each frame given the previous frame's last-stage
heatmaps, PAFs and TAFs (zeros on the first frame, or after the input size
changes), and decodes each frame's people as Lightweight OpenPose's demo does
(`lightweight_openpose.letterbox`, `paf.decode`, COCO-17). It keeps the people's
keypoints in network-input pixels too, where the TAFs lie
(`codecs.taf.score` reads them there). `staf_tracking` tracks and scores them.
"""

from collections.abc import Callable, Iterable, Sequence
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.approaches import base
from jaxpose.approaches.protocols import lightweight_openpose
from jaxpose.metrics.oks import boxes_from_keypoints
from jaxpose.models import staf

# The network input as its own image: decoded positions stay in input pixels.
_INPUT = lightweight_openpose.Letterbox(scale=(1.0, 1.0), pad=(0, 0))


@dataclasses.dataclass
class FramePeople:
  """One frame's people from a STAF model.

  Attributes:
    people: COCO-17 in image pixels (`base.People`); a keypoint not found is
      (0, 0) with score 0.
    input_keypoints: [P, 17, 2] the same keypoints in network-input pixels.
    tafs: [h, w, 66] the frame's TAFs (from the previous frame's people to
      this frame's), None on a video's first frame.
    placement: how the frame lies in the network input.
  """
  people: base.People
  input_keypoints: np.ndarray
  tafs: np.ndarray | None
  placement: lightweight_openpose.Letterbox = _INPUT


# A generated clip (`SyntheticClips` example) -> its frames' people.
FramesFn = Callable[[dict], Sequence[FramePeople]]


def decode_frame(heatmaps: np.ndarray, pafs: np.ndarray, tafs: np.ndarray | None,
                 placement: lightweight_openpose.Letterbox, stride: int) -> FramePeople:
  """A frame's last-stage maps [h, w, 19], [h, w, 38], [h, w, 66] (or None) -> its people, as Lightweight OpenPose's demo.

  `placement`: how the frame lies in the network input (`lightweight_openpose.letterbox`).
  """
  found_people, person_scores = lightweight_openpose.people_in_image(heatmaps, pafs, _INPUT, stride)
  keypoints, keypoint_scores, scores = lightweight_openpose.coco_keypoints(found_people, person_scores)
  found = keypoint_scores[..., None] > 0
  image_keypoints = np.where(found, placement.to_image(keypoints), 0).astype(np.float32)
  boxes = boxes_from_keypoints(image_keypoints, keypoint_scores, score_threshold=0.0)
  return FramePeople(base.People(image_keypoints, keypoint_scores, boxes.astype(np.float32),
                                 scores), keypoints, tafs, placement)


# One compilation per model and input shape, whichever runner calls it
# (the trainer makes a runner at each evaluation).
@functools.partial(jax.jit, static_argnames=('model', 'normalization'))
def _apply(variables: dict, images: jax.Array, previous: dict[str, jax.Array], *,
           model: staf.StafOpenPose, normalization) -> dict[str, jax.Array]:
  """The eval-mode model on RGB pixels [N, H, W, 3] and the previous frame's maps."""
  return model.apply(variables, normalization.normalize(images), previous, train=False)


class RecurrentRunner:
  """Runs a STAF model frame by frame, feeding each frame's last-stage maps to the next."""

  def __init__(self, approach: base.Approach, variables: dict, *,
               input_size: tuple[int, int] | None = None, height: int = lightweight_openpose.DEFAULT_HEIGHT):
    """Jits the eval-mode model.

    Args:
      approach: the model's approach (`StafBottomUp`).
      variables: {'params', 'batch_stats'} of the model.
      input_size: (width, height): every frame letterboxed into it (as the
        training transform fits it into its square); None: scaled to `height`
        and padded to a multiple of 8, as upstream's demo.
      height: the input height without `input_size`.
    """
    model = approach.create_model()
    if not isinstance(model, staf.StafOpenPose):
      raise ValueError(f'RecurrentRunner: {approach.description.get("arch")!r} is not a STAF '
                       'model (one that predicts TAFs)')
    self.model = model
    self.stride = approach.stride
    self.input_size = None if input_size is None else approach.check_input_size(input_size)
    self.height = int(height)
    self.normalization = approach.normalization
    self.variables = jax.tree_util.tree_map(jnp.asarray, variables)
    self.reset()

  def reset(self) -> None:
    """The next frame starts a video (previous maps zero)."""
    self._previous = None
    self._input_shape = None

  def __call__(self, image: np.ndarray) -> FramePeople:
    """RGB image [H, W, 3] uint8, the video's next frame -> its people and TAFs."""
    network_input, placement = lightweight_openpose.letterbox(image, self.height, self.model.input_multiple,
                                                  self.input_size)
    shape = network_input.shape[:2]
    first = self._previous is None or shape != self._input_shape
    if first:
      self._previous = {name: np.zeros(size, np.float32) for name, size in
                        self.model.previous_shapes(1, *shape).items()}
    self._input_shape = shape
    outputs = _apply(self.variables, network_input[None].astype(np.float32), self._previous,
                     model=self.model, normalization=self.normalization)
    self._previous = self.model.previous_of(outputs)
    heatmaps, pafs, tafs = (np.asarray(self._previous[name])[0] for name in staf.RECURRENT_MAPS)
    return decode_frame(heatmaps, pafs, None if first else tafs, placement, self.stride)

  def video(self, images: Iterable[np.ndarray]) -> list[FramePeople]:
    """A video's frames, in order -> each one's people (the runner starts afresh)."""
    self.reset()
    return [self(image) for image in images]
