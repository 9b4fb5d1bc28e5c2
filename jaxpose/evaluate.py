"""Keypoint accuracy metrics, kept apart from models: PCK (and, with the datasets, PCKh and COCO AP)."""

import jax
import jax.numpy as jnp

# The seed's `accuracy`: a joint is correct within 0.5 of a normaliser of
# heatmap_size / 10, i.e. within 5% of the heatmap's width.
PCK_THRESHOLD = 0.5
PCK_NORMALIZER_FRACTION = 0.1


def pck_counts(predicted: jax.Array, target: jax.Array, visible: jax.Array,
               normalizer: jax.Array | float,
               threshold: float = PCK_THRESHOLD) -> tuple[jax.Array, jax.Array]:
  """Predicted, target [..., J, 2], visible [..., J] -> (correct [J], counted [J]) summed over leading dims.

  A visible joint is correct when ||predicted - target|| / normalizer <
  threshold; `normalizer` is a scalar or [...] per example. Returning counts
  rather than a ratio lets devices and batches be summed exactly.
  """
  distance = jnp.linalg.norm(predicted - target, axis=-1)
  normalizer = jnp.asarray(normalizer, jnp.float32)
  if normalizer.ndim:
    normalizer = normalizer[..., None]
  counted = (visible > 0).astype(jnp.float32)
  correct = (distance / normalizer < threshold) * counted
  batch_axes = tuple(range(correct.ndim - 1))
  return correct.sum(axis=batch_axes), counted.sum(axis=batch_axes)
