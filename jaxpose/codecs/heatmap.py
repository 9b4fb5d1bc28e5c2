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
the image). With `dark_kernel` it decodes as mmpose's
`MSRAHeatmap(unbiased=True).decode` implements DARK (Zhang et al., CVPR 2020,
"Distribution-Aware Coordinate Representation for Human Pose Estimation"):
the argmax refined by a Newton step on the Gaussian-modulated log heatmap
(see `decode`).
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


# cv2.getGaussianKernel(n, 0), which cv2.GaussianBlur(src, (n, n), 0) uses,
# returns these fixed tables (/ their sum) for n <= 9 instead of sampling the
# Gaussian of its sigma formula (OpenCV's getGaussianKernelBitExact in
# modules/imgproc/src/smooth.dispatch.cpp; checked against cv2 4.14 in the tests).
_OPENCV_FIXED_KERNELS = {
    3: (1, 2, 1), 5: (1, 4, 6, 4, 1), 7: (2, 7, 14, 18, 14, 7, 2),
    9: (4, 13, 30, 51, 60, 51, 30, 13, 4)}

# (dy, dx) of the log-map values DARK's derivatives read around the argmax.
_DARK_TAPS = ((0, 0), (0, 1), (0, -1), (0, 2), (0, -2), (1, 0), (-1, 0), (2, 0),
              (-2, 0), (1, 1), (-1, 1), (1, -1), (-1, -1))


def opencv_gaussian_kernel(size: int) -> np.ndarray:
  """[size] float32 weights of `cv2.GaussianBlur(src, (size, size), 0)` on a float32 image.

  Fixed tables for size <= 9; beyond, exp(-d^2 / 2 s^2) normalised, d = -(size-1)/2
  .. (size-1)/2, with OpenCV's s = 0.3 ((size - 1) / 2 - 1) + 0.8, in float64
  rounded to float32 as OpenCV does for a CV_32F kernel.
  """
  if size in _OPENCV_FIXED_KERNELS:
    weights = np.asarray(_OPENCV_FIXED_KERNELS[size], np.float64)
  else:
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    d = np.arange(size) - (size - 1) / 2
    weights = np.exp(-d**2 / (2 * sigma**2))
  return (weights / weights.sum()).astype(np.float32)


def _dark_offsets(heatmaps: jax.Array, index: jax.Array,
                  kernel: int) -> tuple[jax.Array, jax.Array]:
  """DARK's Newton step at the argmax: heatmaps [..., H, W, J], index [..., J] -> (dx, dy) [..., J].

  `index` is the flat (row-major over H, W) argmax of the unblurred maps; the
  step is 0 where the Hessian's determinant is 0. The caller masks the border.
  """
  *batch, height, width, joints = heatmaps.shape
  maps = heatmaps.astype(jnp.float32)  # upstream blurs in float32
  weights = opencv_gaussian_kernel(kernel)
  r = kernel // 2
  no_pad = [(0, 0)] * len(batch)
  # Zero padding by the kernel's radius, as upstream's gaussian_blur pads
  # before calling cv2: every output pixel then reads only the padded map, so
  # cv2's BORDER_REFLECT_101 never comes into play. Separable, along W first
  # (cv2's row pass), then along H; shifted slices fuse into one XLA loop.
  padded = jnp.pad(maps, no_pad + [(0, 0), (r, r), (0, 0)])
  rows = sum(w * padded[..., :, t:t + width, :] for t, w in enumerate(weights))
  padded = jnp.pad(rows, no_pad + [(r, r), (0, 0), (0, 0)])
  blurred = sum(w * padded[..., t:t + height, :, :] for t, w in enumerate(weights))
  # Rescale to the original maximum, ratio first as upstream; the clamp to
  # 1e-10 and the log are elementwise, so only the 13 values read need them.
  scale = maps.max(axis=(-3, -2)) / blurred.max(axis=(-3, -2))  # [..., J]
  flat = blurred.reshape(*batch, height * width, joints)
  taps = np.asarray([dy * width + dx for dy, dx in _DARK_TAPS])[:, None]  # [13, 1]
  at = jnp.clip(index[..., None, :] + taps, 0, height * width - 1)  # [..., 13, J]
  values = jnp.take_along_axis(flat, at, axis=-2) * scale[..., None, :]
  values = jnp.log(jnp.maximum(values, 1e-10))
  c, xp, xm, xp2, xm2, yp, ym, yp2, ym2, pp, mp, pm, mm = (
      values[..., i, :] for i in range(len(_DARK_TAPS)))
  # Upstream's finite differences, term for term: central first derivatives,
  # second derivatives over a two-pixel step, all divided as upstream does.
  dx = 0.5 * (xp - xm)
  dy = 0.5 * (yp - ym)
  dxx = 0.25 * (xp2 - 2 * c + xm2)
  dxy = 0.25 * (pp - mp - pm + mm)
  dyy = 0.25 * (yp2 - 2 * c + ym2)
  det = dxx * dyy - dxy**2
  invertible = det != 0
  det = jnp.where(invertible, det, 1.)
  # -inverse(Hessian) @ gradient, with the 2x2 inverse written out.
  step_x = -(dyy * dx - dxy * dy) / det
  step_y = -(dxx * dy - dxy * dx) / det
  return jnp.where(invertible, step_x, 0.), jnp.where(invertible, step_y, 0.)


def decode(heatmaps: jax.Array, dark_kernel: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Heatmaps [..., H, W, J] -> (coordinates [..., J, 2] (x, y heatmap pixels), max values [..., J]).

  By default the argmax, moved a quarter pixel toward the higher of its two
  neighbours along each axis when it is not on the map's outer two rows or
  columns. Joints whose maximum is not positive get (0, 0), as upstream.

  With `dark_kernel` (an odd int >= 3, static under jit; mmpose uses 11 for
  sigma 2 targets, 17 for sigma 3) it decodes as DARK in open-mmlab/mmpose at
  commit 759b39c13fea6ba094afc1fa932f51dc1b11cbf9: `MSRAHeatmap.decode` with
  `unbiased=True` (mmpose/codecs/msra_heatmap.py), which takes
  `get_heatmap_maximum` and refines it with `refine_keypoints_dark`
  (mmpose/codecs/utils/refinement.py) and `gaussian_blur`
  (mmpose/codecs/utils/post_processing.py). Per map h [H, W] of a joint:

  1. (x, y) = argmax of h (the first maximum in row-major order), m = max h;
     the returned max values are m, of the unblurred maps, as upstream.
  2. Modulation: b = h * G, the 2-D convolution with G = g g^T, g [k] the
     1-D kernel of `cv2.GaussianBlur(., (k, k), 0)` (`opencv_gaussian_kernel`),
     taking h as 0 outside the map (upstream pads (k - 1) / 2 zeros on each
     side before calling cv2, so cv2's own BORDER_REFLECT_101 never reaches
     the map); then b' = b * (m / max b), so b' has h's maximum, and
     L = log(max(b', 1e-10)) [H, W].
  3. Where 1 < x < W - 2 and 1 < y < H - 2 (m > 0 implied: non-positive maps
     sit at (0, 0)), one Newton step on L from the integer argmax:
       g = [L(x+1, y) - L(x-1, y), L(x, y+1) - L(x, y-1)] / 2,
       Lxx = (L(x+2, y) - 2 L(x, y) + L(x-2, y)) / 4, Lyy likewise,
       Lxy = (L(x+1, y+1) - L(x+1, y-1) - L(x-1, y+1) + L(x-1, y-1)) / 4,
       (x, y) <- (x, y) - [[Lxx, Lxy], [Lxy, Lyy]]^-1 g,
     skipped when the Hessian's determinant is exactly 0. For a Gaussian map
     log h is a quadratic, so the step lands on its centre.

  One difference from upstream: a map whose maximum is not positive decodes
  to (0, 0) here, as in the default mode, where mmpose returns (-1, -1).
  The modulation and the step run on the whole batch at once, in float32 as
  upstream; the blur costs 2 k multiply-adds per heatmap pixel, the step
  reads 13 values per joint.

  Raises:
    ValueError: heatmaps of rank below 3, or a dark_kernel that is not an odd
      integer >= 3.
  """
  heatmaps = jnp.asarray(heatmaps)
  if heatmaps.ndim < 3:
    raise ValueError(f'decode: heatmaps must be [..., H, W, J] (rank 3 or more), '
                     f'got shape {heatmaps.shape}')
  if dark_kernel is not None and (
      isinstance(dark_kernel, bool) or not isinstance(dark_kernel, (int, np.integer))
      or dark_kernel < 3 or dark_kernel % 2 == 0):
    raise ValueError(f'decode: dark_kernel must be None or an odd integer >= 3 '
                     f'(the Gaussian blur kernel size), got {dark_kernel!r}')
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
  if dark_kernel is not None:
    step_x, step_y = _dark_offsets(heatmaps, index, int(dark_kernel))
    interior = (x > 1) & (x < width - 2) & (y > 1) & (y < height - 2)
    x = jnp.where(interior, x + step_x, x)
    y = jnp.where(interior, y + step_y, y)
    return jnp.stack([x, y], axis=-1), max_values
  interior = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
  dx = jnp.sign(at(index + 1) - at(index - 1))
  dy = jnp.sign(at(index + width) - at(index - width))
  x = jnp.where(interior, x + 0.25 * dx, x)
  y = jnp.where(interior, y + 0.25 * dy, y)
  return jnp.stack([x, y], axis=-1), max_values
