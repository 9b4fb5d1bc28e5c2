"""jaxpose.codecs.heatmap against the seed's generate_target and argmax decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.codecs import heatmap
import seed_reference


def _random_joints(rng, n, num_joints, image_size, sigma, stride):
  """[n, J, 2] joints covering the map, its borders and well beyond, plus visibility."""
  w, h = image_size
  margin = (3 * sigma + 3) * max(stride)
  x = rng.uniform(-margin, w + margin, (n, num_joints))
  y = rng.uniform(-margin, h + margin, (n, num_joints))
  joints = np.stack([x, y], -1).astype(np.float32)
  # Exact grid points and half-way points, where rounding is decided. Only
  # for strides that are powers of two: there x / stride is exact in float32
  # as in the seed's float64, elsewhere the two can round a half-way point
  # differently (see the module docstring).
  dyadic = all(float(s).is_integer() and (int(s) & (int(s) - 1)) == 0 for s in stride)
  k = rng.integers(0 if dyadic else 2, 4, (n, num_joints))
  grid = rng.integers(-8, max(w, h) // 4 + 8, (n, num_joints, 2)).astype(np.float32)
  joints = np.where((k == 0)[..., None], grid * np.asarray(stride, np.float32), joints)
  joints = np.where((k == 1)[..., None],
                    (grid - 0.5) * np.asarray(stride, np.float32), joints)
  # Small negative coordinates, where int() and floor() differ.
  small = rng.uniform(-2 * max(stride), 0.5, (n, num_joints, 2)).astype(np.float32)
  joints = np.where((k == 2)[..., None], small, joints)
  visible = (rng.random((n, num_joints)) > 0.2).astype(np.float32)
  return joints, visible


@pytest.mark.parametrize('image_size,heatmap_size,sigma', [
    ((256, 256), (64, 64), 2),
    ((192, 256), (48, 64), 2),
    ((256, 256), (64, 64), 1),
    ((288, 384), (72, 96), 3),
    ((256, 192), (40, 30), 2),  # non-integer stride 6.4
])
def test_encode_equals_seed_generate_target(image_size, heatmap_size, sigma):
  rng = np.random.default_rng(sum(image_size) + sigma)
  num_joints, n = 17, 200  # 3400 joints per configuration
  stride = tuple(i / m for i, m in zip(image_size, heatmap_size))
  joints, visible = _random_joints(rng, n, num_joints, image_size, sigma, stride)
  encode = jax.jit(heatmap.encode,
                   static_argnames=('image_size', 'heatmap_size', 'sigma'))
  target, weight = encode(joints, visible, image_size=image_size,
                          heatmap_size=heatmap_size, sigma=sigma)
  target, weight = np.asarray(target), np.asarray(weight)
  assert target.shape == (n, heatmap_size[1], heatmap_size[0], num_joints)
  assert weight.shape == (n, num_joints)
  for i in range(n):
    ref_target, ref_weight = seed_reference.generate_target(
        np.concatenate([joints[i], np.zeros((num_joints, 1), np.float32)], -1),
        np.repeat(visible[i][:, None], 3, axis=1), num_joints=num_joints,
        image_size=image_size, heatmap_size=heatmap_size, sigma=sigma)
    np.testing.assert_allclose(target[i], ref_target.transpose(1, 2, 0), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(weight[i], ref_weight[:, 0])
  # The edge cases were really exercised: joints dropped for being off the
  # map, and Gaussians cut by the border.
  on_map_visible = weight > 0
  assert (visible > 0).sum() > on_map_visible.sum() > 0.3 * visible.size
  assert (target.max(axis=(1, 2)) == 1).sum() < on_map_visible.sum()


def test_encode_rounds_toward_zero_like_int():
  # x / 4 + 0.5 = -0.2: int() gives 0 (floor would give -1), so the Gaussian
  # peaks at column 0.
  target, weight = heatmap.encode(np.array([[[-2.8, 10.0]]]), np.array([[1.0]]),
                                  image_size=(64, 64), heatmap_size=(16, 16), sigma=1)
  assert weight[0, 0] == 1
  assert np.unravel_index(np.argmax(target[0, :, :, 0]), (16, 16)) == (3, 0)
  assert target[0, 3, 0, 0] == 1


def test_encode_any_leading_dims_and_no_joints_loop():
  rng = np.random.default_rng(0)
  joints = rng.uniform(0, 256, (2, 3, 16, 2))
  visible = np.ones((2, 3, 16))
  target, weight = heatmap.encode(joints, visible, image_size=(256, 256),
                                  heatmap_size=(64, 64), sigma=2)
  assert target.shape == (2, 3, 64, 64, 16) and weight.shape == (2, 3, 16)
  flat_target, _ = heatmap.encode(joints.reshape(6, 16, 2), visible.reshape(6, 16),
                                  image_size=(256, 256), heatmap_size=(64, 64), sigma=2)
  np.testing.assert_array_equal(np.asarray(target).reshape(6, 64, 64, 16), flat_target)


def test_encode_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='visible'):
    heatmap.encode(np.zeros((4, 16, 2)), np.zeros((4, 17)), image_size=(256, 256),
                   heatmap_size=(64, 64), sigma=2)


def test_decode_matches_reference_on_random_and_encoded_maps():
  rng = np.random.default_rng(1)
  maps = rng.normal(size=(6, 32, 24, 5)).astype(np.float32)
  maps[0, ..., 1] = -np.abs(maps[0, ..., 1])  # non-positive maximum -> (0, 0)
  maps[1, 0, 5, 2] = 100  # maximum on the border row: no shift
  coords, maxvals = jax.jit(heatmap.decode)(maps)
  for i in range(len(maps)):
    ref_coords, ref_max = seed_reference.decode_argmax_quarter_offset(
        maps[i].transpose(2, 0, 1))
    np.testing.assert_array_equal(coords[i], ref_coords)
    np.testing.assert_array_equal(maxvals[i], ref_max)
  np.testing.assert_array_equal(coords[0, 1], [0, 0])
  np.testing.assert_array_equal(coords[1, 2], [5, 0])


def test_decode_inverts_encode_within_a_quarter_pixel():
  rng = np.random.default_rng(2)
  joints = rng.uniform(16, 240, (8, 16, 2)).astype(np.float32)
  target, _ = heatmap.encode(joints, np.ones((8, 16)), image_size=(256, 256),
                             heatmap_size=(64, 64), sigma=2)
  coords, maxvals = heatmap.decode(target)
  np.testing.assert_array_equal(maxvals, 1)
  # The peak is the rounded joint; the shift moves at most a quarter pixel.
  assert np.abs(np.asarray(coords) - joints / 4).max() <= 0.5 + 0.25 + 1e-6
