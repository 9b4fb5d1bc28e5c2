"""The approaches of the seed, one object each, behind one abstract interface (`base.Approach`).

`TopDown` (crops of one person; stacked hourglass), `BottomUp` (whole
images; Lightweight and CMU OpenPose) and `StafBottomUp` (the recurrent STAF
model) implement every hook that the trainer, `jaxpose eval`, `jaxpose
infer` and `jaxpose export` call: the model, targets, loss, metrics, data
transform, prediction, evaluation, export signature and a video's state.
Callers hold the approach of the model they have and never test which one
it is:

  approach = approaches.for_description(description)   # a checkpoint's, or the config's
  targets = approach.make_targets(batch, config)

How a model's maps become people as a published result did (crops, flip
test, decoding, grouping, scoring) is a protocol (`approaches.protocols`),
chosen by name with `Options.protocol`, by default the one of its arch.
Which approach a model belongs to is a fact of its family (`models/`): a
model that predicts part affinity fields is bottom-up, one that also
predicts temporal affinity fields is STAF's.
"""

from collections.abc import Mapping
import dataclasses
from typing import Any

import ml_collections

from jaxpose import config as config_lib
from jaxpose import models, skeletons
from jaxpose.data import sources
from jaxpose.approaches import protocols
from jaxpose.approaches.base import (Approach, EvalOptions, ExportSignature, Options, People,
                                     Share, last_output)
from jaxpose.approaches.bottomup import BottomUp
from jaxpose.approaches.staf import StafBottomUp
from jaxpose.approaches.topdown import TopDown

__all__ = ['Approach', 'BottomUp', 'EvalOptions', 'ExportSignature', 'Options', 'People',
           'Share', 'StafBottomUp', 'TopDown', 'for_config', 'for_description', 'last_output', 'protocols']


def for_description(description: Mapping[str, Any]) -> Approach:
  """A model description ({'arch': ..., **options}) -> the approach of its model.

  A model that predicts temporal affinity fields is STAF's (`StafBottomUp`),
  one that predicts part affinity fields bottom-up, any other top-down.
  """
  maps = models.model_class(description).OUTPUT_MAPS
  if 'tafs' in maps:
    return StafBottomUp(description)
  return BottomUp(description) if 'pafs' in maps else TopDown(description)


def for_config(config: ml_collections.ConfigDict) -> Approach:
  """A training config -> the approach of config.model, its keypoints the dataset's where it says `FROM_DATA`.

  config.model.num_joints 0 (`config.FROM_DATA`) takes the number of
  keypoints of the dataset's layout (`sources.data_skeleton`); an explicit
  number is kept, and `Approach.check_data` names it if the data disagrees.
  """
  description = config.model.to_dict()
  if description.get('num_joints') == config_lib.FROM_DATA:
    description['num_joints'] = sources.data_skeleton(config).num_keypoints
  model_class = models.model_class(description)
  fields = {field.name for field in dataclasses.fields(model_class)}
  if {'num_heatmaps', 'num_pafs'} <= fields and 'tafs' not in model_class.OUTPUT_MAPS:
    layout = sources.data_skeleton(config)
    if layout is not skeletons.COCO:
      # A bottom-up model of another layout: a heatmap per keypoint and the
      # background, a field per limb (the family checks it has the fields).
      description.update(num_heatmaps=layout.num_keypoints + 1, num_pafs=2 * len(layout.limbs),
                         skeleton=skeletons.to_dict(layout))
  return for_description(description)
