"""jaxpose.models.normalization: a model description's input normalisation, and each family's default."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose import models
from jaxpose.models import normalization


def _pixels():
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (2, 8, 6, 3)).astype(np.uint8)


def test_family_defaults_are_the_formulas_their_weights_were_trained_with():
  images = _pixels()
  hourglass = models.input_normalization({'arch': 'hourglass'}).normalize(images)
  expected = ((jnp.asarray(images, jnp.float32) / 255.0 - jnp.asarray((0.485, 0.456, 0.406)))
              / jnp.asarray((0.229, 0.224, 0.225)))
  np.testing.assert_array_equal(hourglass, expected)  # bit for bit: checkpoints depend on it
  openpose = models.input_normalization({'arch': 'lightweight_openpose'}).normalize(images)
  np.testing.assert_array_equal(openpose, (images[..., ::-1].astype(np.float32) - 128) / 256)


def test_a_description_entry_overrides_the_default_and_round_trips():
  # bearpaw's inputs: RGB / 255 minus a mean, no std.
  bearpaw = normalization.Normalization('RGB', 255.0, (0.44, 0.444, 0.43), (1.0, 1.0, 1.0))
  description = {'arch': 'hourglass', 'normalization': bearpaw.to_dict()}
  assert models.input_normalization(description) == bearpaw
  images = _pixels()
  np.testing.assert_allclose(bearpaw.normalize(images), images / 255.0 - np.array([0.44, 0.444, 0.43]),
                             rtol=1e-6, atol=1e-6)
  # The entry is not a model field: the model builds as without it.
  assert models.model_config(models.create_model(description)) == models.model_config(
      models.create_model({'arch': 'hourglass'}))


@pytest.mark.parametrize('fields, message', [
    ({'channels': 'RGBA'}, 'channels'),
    ({'mean': [1.0, 2.0]}, 'mean'),
    ({'std': [1.0, 0.0, 1.0]}, 'nonzero'),
    ({'scale': 2.0}, r"unknown field\(s\) \['scale'\]"),
])
def test_bad_entries_are_named(fields, message):
  with pytest.raises(ValueError, match=message):
    models.input_normalization({'arch': 'hourglass', 'normalization': fields})
