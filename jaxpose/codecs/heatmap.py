"""Gaussian heatmaps for top-down models: joints -> targets, heatmaps -> joints.

`encode` is the seed's `generate_target` (the SimpleBaseline / HRNet
`JointsDataset.generate_target` that the stacked-hourglass distillation code
trains with), vectorised over joints and any leading batch dimensions so it
runs inside the jitted train step. It reproduces that function exactly:

- the centre is `int(x / stride + 0.5)`, and Python's `int` truncates toward
  zero, so -0.7 becomes 0, not -1 (with a power-of-two stride, such as the
  usual 4, x / stride is exact and the result equals the seed's bit for bit;
  with another stride, float32 and the seed's float64 division can disagree
  on a joint within one float32 ulp of a half-way point, e.g. x = 6.4 k - 3.2
  for stride 6.4, which moves that Gaussian by one pixel);
- the Gaussian is drawn on a (6 sigma + 1)-pixel window whose corners are
  truncated the same way, clipped to the map;
- a joint whose window misses the map gets weight 0 and no Gaussian, an
  invisible joint gets its visibility as weight (0) and no Gaussian.

The window is separable, exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2/2s^2) *
exp(-dy^2/2s^2), so the map is the outer product of two 1-D profiles computed
directly in the channels-last layout [..., H, W, J]: one multiply per output
element, which keeps encoding at the cost of writing the output.

`decode` is the matching argmax decoder with the quarter-pixel shift toward the
higher neighbour (SimpleBaseline's `get_final_preds` without the affine back to
the image).
"""

import jax
import jax.numpy as jnp
import numpy as np


def _window_exponents(mu: jax.Array, heatmap_size: tuple[int, int],
                      radius: float, sigma: float) -> tuple[jax.Array, jax.Array]:
  """Exponents of the seed's Gaussian window along x and y.

  Args:
    mu: [..., J, 2] integer-valued window centres (x, y heatmap pixels).
    heatmap_size: (width, height).
    radius: the seed's `tmp_size` (3 sigma).
    sigma: Gaussian sigma in heatmap pixels.

  Returns:
    ([..., 2, S, J] exponents -(d^2 / 2 sigma^2) for x (row 0) and y (row 1),
    -inf outside the window or the map, S = max(width, height);
    [..., J] bool, whether any of the window lies on the map).
  """
  size = np.asarray(heatmap_size, np.float32)
  ul = jnp.trunc(mu - radius)  # the seed's int() of the window's corners
  br = jnp.trunc(mu + radius + 1)
  on_map = jnp.all((ul < size) & (br >= 0), axis=-1)
  window = 2 * radius + 1
  centre = window // 2
  window_len = np.ceil(window)  # len(np.arange(0, window))
  pixel = jnp.arange(max(heatmap_size), dtype=jnp.float32)[:, None]  # [S, 1]
  ul = jnp.swapaxes(ul, -1, -2)[..., :, None, :]  # [..., 2, 1, J]
  br = jnp.swapaxes(br, -1, -2)[..., :, None, :]
  offset = pixel - ul  # position inside the window, [..., 2, S, J]
  inside = ((offset >= 0) & (offset < window_len) & (pixel < br) &
            (pixel < size[:, None, None]))
  exponent = jnp.where(inside, -(offset - centre)**2 / (2 * sigma**2), -jnp.inf)
  return exponent, on_map


def encode(joints: jax.Array, visible: jax.Array, *,
           image_size: tuple[int, int], heatmap_size: tuple[int, int],
           sigma: float) -> tuple[jax.Array, jax.Array]:
  """Joints [..., J, 2] (x, y image pixels), visible [..., J] -> (target [..., H, W, J], weight [..., J]).

  `image_size` and `heatmap_size` are (width, height). Equal to the seed's
  `generate_target` for every input; jittable, sizes and sigma static.
  """
  joints = jnp.asarray(joints, jnp.float32)
  visible = jnp.asarray(visible, jnp.float32)
  if joints.shape[-1] != 2 or visible.shape != joints.shape[:-1]:
    raise ValueError(f'encode: expected joints [..., J, 2] and visible [..., J], '
                     f'got {joints.shape} and {visible.shape}')
  width, height = heatmap_size
  stride = (np.asarray(image_size, np.float64) /
            np.asarray(heatmap_size, np.float64)).astype(np.float32)
  mu = jnp.trunc(joints / stride + 0.5)  # int(x + 0.5): truncation toward zero
  exponent, on_map = _window_exponents(mu, heatmap_size, 3 * sigma, sigma)
  weight = jnp.where(on_map, visible, 0.)
  # exp(-inf) = 0: masking exponents rather than results leaves XLA two small
  # materialised profiles, so the outer product below fuses to a bare
  # multiply per output element, in the channels-last layout.
  drawn = weight > 0.5
  profile = jnp.exp(jnp.where(drawn[..., None, None, :], exponent, -jnp.inf))
  target = profile[..., 1, :height, None, :] * profile[..., 0, None, :width, :]
  return target, weight


def decode(heatmaps: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Heatmaps [..., H, W, J] -> (coordinates [..., J, 2] (x, y heatmap pixels), max values [..., J]).

  The argmax, moved a quarter pixel toward the higher of its two neighbours
  along each axis when it is not on the map's outer two rows or columns.
  Joints whose maximum is not positive get (0, 0), as upstream.
  """
  heatmaps = jnp.asarray(heatmaps)
  *batch, height, width, joints = heatmaps.shape
  flat = heatmaps.reshape(*batch, height * width, joints)
  index = jnp.argmax(flat, axis=-2)  # [..., J]

  def at(i):
    i = jnp.clip(i, 0, height * width - 1)
    return jnp.take_along_axis(flat, i[..., None, :], axis=-2)[..., 0, :]

  max_values = at(index)
  x = (index % width).astype(jnp.float32)
  y = (index // width).astype(jnp.float32)
  positive = max_values > 0
  x = jnp.where(positive, x, 0.)
  y = jnp.where(positive, y, 0.)
  interior = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
  dx = jnp.sign(at(index + 1) - at(index - 1))
  dy = jnp.sign(at(index + width) - at(index - width))
  x = jnp.where(interior, x + 0.25 * dx, x)
  y = jnp.where(interior, y + 0.25 * dy, y)
  return jnp.stack([x, y], axis=-1), max_values
