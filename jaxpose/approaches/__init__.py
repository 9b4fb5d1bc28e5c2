"""The two approaches of the seed, one object each: `TopDown` (crops of one person) and `BottomUp` (whole images).

An approach owns everything that differs between the two: output stride,
input normalisation (from the model description), targets, loss, training
metric, the kind of source (per person or per image) and its transform, the
decoding protocols, the evaluation metric and protocol, and the prediction
function that evaluation, inference and export all call. The trainer,
`jaxpose eval`, `jaxpose infer` and `jaxpose export` call the approach of the
model they hold and never look at its architecture's name:

  approach = approaches.for_description(description)   # a checkpoint's, or the config's
  targets = approach.make_targets(batch, config)

Which approach a model belongs to is a fact of its family (`models/`): a
model that predicts part affinity fields is bottom-up, one that also
predicts temporal affinity fields is STAF's (`approaches.staf`).
"""

from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxpose import models
from jaxpose.approaches.base import Approach, EvalOptions, People, last_output
from jaxpose.approaches.bottomup import BottomUp
from jaxpose.approaches.staf import StafBottomUp
from jaxpose.approaches.topdown import TopDown

__all__ = ['Approach', 'BottomUp', 'EvalOptions', 'People', 'StafBottomUp', 'TopDown',
           'for_config', 'for_description', 'last_output']


def for_description(description: Mapping[str, Any]) -> TopDown | BottomUp:
  """A model description ({'arch': ..., **options}) -> the approach of its model.

  A model that predicts temporal affinity fields is STAF's (`StafBottomUp`),
  one that predicts part affinity fields bottom-up, any other top-down.
  """
  maps = models.model_class(description).OUTPUT_MAPS
  if 'tafs' in maps:
    return StafBottomUp(description)
  return BottomUp(description) if 'pafs' in maps else TopDown(description)


def for_config(config: ml_collections.ConfigDict) -> TopDown | BottomUp:
  """A training config -> the approach of config.model."""
  return for_description(config.model.to_dict())
