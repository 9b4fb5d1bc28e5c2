"""Protocols: each reproduced published procedure is one module, chosen by name (`--protocol NAME`).

A protocol is what turns a network's maps into people the way a published
result was produced: input size and normalisation of the crop or image, flip
test, decoding, grouping, scoring. Each module says in its docstring what it
reproduces, from which upstream file and commit, and what it changes:

  jaxpose_topdown       models trained here (top-down): padded crops, exact flip test, DARK optional
  mmpose_topdown        mmpose's top-down COCO evaluation (CocoMetric), as its checkpoints publish
  bearpaw_mpii          bearpaw/pytorch-pose's MPII evaluation (`main.py -e`, `eval_PCKh.py`)
  lightweight_openpose  Lightweight OpenPose's demo.py (inference) and val.py (COCO evaluation)
  cmu_openpose          CMU OpenPose's PyTorch port, `src/body.py`

A top-down protocol module defines `predict`, `coco_results` and
`mpii_keypoints` (`TopDownProtocol`), a bottom-up one `predict` and
`coco_people` (`BottomUpProtocol`); a case it does not reproduce raises a
ValueError naming the protocols that do. A model's default protocol comes
from `DEFAULT_FOR_ARCH`, keyed by its checkpoint's `arch`. Adding a protocol
is one module here and one entry in `PROTOCOLS`.
"""

from collections.abc import Callable, Mapping
import types
from typing import Any, Protocol

import numpy as np

from jaxpose.approaches.protocols import (bearpaw_mpii, cmu_openpose, jaxpose_topdown,
                                          lightweight_openpose, mmpose_topdown)

# Name -> module, for `--protocol NAME`.
PROTOCOLS: dict[str, types.ModuleType] = {
    module.NAME: module for module in (jaxpose_topdown, mmpose_topdown, bearpaw_mpii,
                                       lightweight_openpose, cmu_openpose)}
# A checkpoint's arch -> the protocol its model runs with unless `--protocol` says otherwise:
# models trained here run jaxpose's own top-down protocol or Lightweight OpenPose's; CMU's
# published weights run its port's body.py. (mmpose checkpoints reproduce their published
# AP with --protocol mmpose_topdown; on MPII they run jaxpose's.)
DEFAULT_FOR_ARCH = {
    'hourglass': jaxpose_topdown.NAME,
    'mmpose_hourglass': jaxpose_topdown.NAME,
    'lightweight_openpose': lightweight_openpose.NAME,
    'staf': lightweight_openpose.NAME,
    'openpose': cmu_openpose.NAME,
}


class TopDownProtocol(Protocol):
  """What a top-down protocol module defines (see `jaxpose_topdown` for the shapes)."""
  NAME: str
  APPROACH: str
  PCKH_STRICT: bool

  def predict(self, heatmaps_fn: Callable, image: np.ndarray, boxes: np.ndarray,
              input_size: tuple[int, int], skeleton: Any, options: Any
              ) -> tuple[np.ndarray, np.ndarray]: ...

  def coco_results(self, heatmaps_fn: Callable, image: np.ndarray, image_id: int,
                   boxes: np.ndarray, box_scores: np.ndarray, input_size: tuple[int, int],
                   skeleton: Any, options: Any, detected: bool) -> list[dict]: ...

  def mpii_keypoints(self, heatmaps_fn: Callable, image: np.ndarray, record: Any,
                     input_size: tuple[int, int], skeleton: Any, options: Any
                     ) -> np.ndarray: ...


class BottomUpProtocol(Protocol):
  """What a bottom-up protocol module defines (see `lightweight_openpose` for the shapes).

  A protocol whose grouping takes any limb graph (`lightweight_openpose`)
  also accepts `layout=` (a `paf_grouping.PafLayout`) in `predict` and
  `coco_people`; `BottomUp` passes it only to such a protocol.
  """
  NAME: str
  APPROACH: str
  DEFAULT_HEIGHT: int
  DEFAULT_SCALES: tuple[float, ...]

  def predict(self, maps_fn: Callable, image: np.ndarray, height: int, stride: int,
              input_multiple: int, input_size: tuple[int, int] | None
              ) -> tuple[np.ndarray, np.ndarray]: ...

  def coco_people(self, maps_fn: Callable, image: np.ndarray, scales: tuple[float, ...],
                  stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def named(name: str) -> types.ModuleType:
  """--protocol NAME -> its module; ValueError listing the names otherwise."""
  if name not in PROTOCOLS:
    raise ValueError(f'--protocol: expected one of {", ".join(PROTOCOLS)}, got {name!r}')
  return PROTOCOLS[name]


def default_for(description: Mapping[str, Any]) -> types.ModuleType:
  """A model description -> the module of its arch's default protocol (`DEFAULT_FOR_ARCH`)."""
  name = DEFAULT_FOR_ARCH.get(description.get('arch'))
  if name is None:
    raise ValueError(f'model description: no default protocol for arch '
                     f'{description.get("arch")!r}; approaches.protocols.DEFAULT_FOR_ARCH knows '
                     f'{sorted(DEFAULT_FOR_ARCH)}')
  return PROTOCOLS[name]
