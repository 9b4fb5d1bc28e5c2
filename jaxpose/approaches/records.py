"""What the approaches' hooks and the protocols take and give: People, Options, ExportSignature, named outputs.

Its own module, below both `base` (the interface) and `protocols`, so that
neither imports the other's data types through a cycle.
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import re
from typing import Any
import warnings

import numpy as np

# The old per-case protocol names (`--mpii_protocol`, `--coco_protocol`, infer's
# `--protocol jaxpose|mmpose`) -> the protocol's name now; kept for one release.
OLD_PROTOCOL_NAMES = {'jaxpose': None, 'bearpaw': 'bearpaw_mpii', 'mmpose': 'mmpose_topdown'}


def renamed_protocol(old: str, flag: str) -> str | None:
  """An old protocol value of `flag` -> the new name (None: the model's default), warning once."""
  if old not in OLD_PROTOCOL_NAMES:
    raise ValueError(f'{flag}: expected one of {sorted(OLD_PROTOCOL_NAMES)}, got {old!r}')
  new = OLD_PROTOCOL_NAMES[old]
  warnings.warn(f'{flag}={old} is deprecated: use --protocol={new or "NAME"} '
                '(jaxpose eval --help lists them; without it, the model\'s default)',
                DeprecationWarning, stacklevel=3)
  return new


@dataclasses.dataclass
class People:
  """One image's people: keypoints [P, J, 2] image pixels, keypoint scores [P, J], boxes [P, 4] (x, y, w, h), scores [P].

  `links`: what links them to the next frame's people, when the approach
  predicts it (STAF: the frame's `FramePeople`, its keypoints in input
  pixels and its TAFs); None otherwise.
  """
  keypoints: np.ndarray
  keypoint_scores: np.ndarray
  boxes: np.ndarray
  scores: np.ndarray
  links: Any = None


@dataclasses.dataclass(frozen=True)
class Share:
  """This process's share of an evaluation over `count` processes: every `count`-th item from `index`.

  `take(items)` is the share; `gather(mine)`, with one entry per item of the
  share, gives every process all the entries in the items' order (JAX's
  `process_allgather` of their pickled bytes), so that scoring sees exactly
  what one process would have produced. `writes` is whether this process
  writes the shared outputs (process 0).
  """
  index: int = 0
  count: int = 1

  @property
  def writes(self) -> bool:
    return self.index == 0

  def take(self, items: Sequence) -> list:
    return list(items)[self.index::self.count]

  def gather(self, mine: Sequence) -> list:
    """One entry per item of this share -> one per item of all shares, in the items' order."""
    if self.count == 1:
      return list(mine)
    import pickle  # pylint: disable=import-outside-toplevel
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    payload = np.frombuffer(pickle.dumps(list(mine)), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([payload.size]))
    padded = np.zeros(int(np.max(sizes)), np.uint8)
    padded[:payload.size] = payload
    everyone = multihost_utils.process_allgather(padded)  # [count, longest]
    shares = [pickle.loads(everyone[index][:int(sizes[index][0])].tobytes())
              for index in range(self.count)]
    total = sum(len(share) for share in shares)
    return [shares[position % self.count][position // self.count] for position in range(total)]


@dataclasses.dataclass(frozen=True)
class Options:
  """How an approach predicts and evaluates: one object for every approach (fields an approach does not use are ignored).

  Attributes:
    protocol: a name of `protocols.PROTOCOLS`; None: the model's default
      (`protocols.DEFAULT_FOR_ARCH` of its arch).
    flip_test: top-down: average with the mirrored crops' heatmaps.
    dark_kernel: top-down, jaxpose_topdown: decode heatmaps with DARK and
      this blur kernel (`heatmap.decode`; 11 for sigma-2 targets).
    input_size: top-down crop (width, height) of a JAX model; None: the
      size it was trained at (an ONNX model fixes its own).
    height: bottom-up network input height of inference; None: the
      protocol's (demo.py 256, body.py 184).
    scales: bottom-up evaluation input scales whose maps are averaged
      (val.py's `--multiscale`: `lightweight_openpose.MULTISCALE`); None:
      the protocol's own (val.py (1,), body.py (0.5,), of a 368-pixel height).
    detections: COCO results-format person boxes (top-down COCO
      evaluation); None uses the ground-truth boxes.
    detection_threshold: detections scored lower are dropped.
    boxes_from: top-down COCO: a bottom-up model (workdir or .onnx) whose
      people give the person boxes (`Approach.person_boxes`), OKS-NMS after,
      as with detections; `jaxpose.evaluation` loads it into `person_boxes`.
    person_boxes: image [H, W, 3] -> (boxes [P, 4] x, y, w, h; scores [P]).
    posetrack: STAF: a PoseTrack18 annotation file or folder to track on,
      instead of generated clips; its images under `posetrack_images`.
    share: this process's share of the evaluation's images, clips or people
      (`Share`; several processes: `jaxpose.evaluation`).
    mpii_protocol, coco_protocol: deprecated (one release): 'jaxpose',
      'bearpaw' or 'mmpose', turned into `protocol` with a warning.
  """
  protocol: str | None = None
  flip_test: bool = True
  dark_kernel: int | None = None
  input_size: tuple[int, int] | None = None
  height: int | None = None
  scales: tuple[float, ...] | None = None
  detections: str | None = None
  detection_threshold: float = 0.0
  boxes_from: str | None = None
  person_boxes: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
  posetrack: str | None = None
  posetrack_images: str = ''
  share: Share = Share()
  mpii_protocol: str | None = None
  coco_protocol: str | None = None

  def __post_init__(self):
    for field in ('mpii_protocol', 'coco_protocol'):
      old = getattr(self, field)
      if old is not None:
        new = renamed_protocol(old, f'--{field}')
        if new is not None:
          object.__setattr__(self, 'protocol', new)
        object.__setattr__(self, field, None)


# The name `jaxpose eval`'s options had before they were every hook's (one release).
EvalOptions = Options


@dataclasses.dataclass(frozen=True)
class ExportSignature:
  """The exported graph's interface.

  Attributes:
    inputs: input name -> shape, the batch dimension named 'N'.
    outputs: output names, in order.
    feedback: output name -> the input it feeds on the next frame (a
      recurrent model, run frame by frame); empty for one-image models.
  """
  inputs: dict[str, tuple[int | str, ...]]
  outputs: list[str]
  feedback: dict[str, str] = dataclasses.field(default_factory=dict)


def last_output(outputs: Mapping[str, Any], map_name: str):
  """Named outputs (`map_name`_stack<i> or _stage<i>, all or the last only) -> the last stage's."""
  pattern = re.compile(rf'{map_name}_[a-z]+(\d+)')
  indices = {int(match.group(1)): name for name in outputs
             if (match := pattern.fullmatch(name))}
  if not indices:
    raise ValueError(f'model outputs: none named {map_name}_stage<i> or _stack<i>, got '
                     f'{sorted(outputs)}')
  return outputs[indices[max(indices)]]


