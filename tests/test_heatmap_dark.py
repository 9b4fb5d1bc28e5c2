"""DARK decoding (`heatmap.decode(..., dark_kernel=k)`) against a transcription of mmpose's."""

import json
import pathlib

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.codecs import heatmap
import mmpose_dark_reference

COCO_JSON = pathlib.Path(__file__).parent / 'data' / 'coco' / 'test_coco.json'
decode_jit = jax.jit(heatmap.decode, static_argnames='dark_kernel')
encode_jit = jax.jit(heatmap.encode, static_argnames=('image_size', 'heatmap_size', 'sigma'))


def _reference(maps, kernel):
  """mmpose's decode of each person: maps [N, H, W, J] -> (coords [N, J, 2], scores [N, J]).

  Maps whose maximum is not positive are moved from mmpose's (-1, -1) to
  jaxpose's (0, 0), the one convention `decode` keeps from its default mode.
  """
  coords, scores = [], []
  for person in np.asarray(maps, np.float32):
    # An all-zero map divides 0 by 0 in upstream's rescale (its joint is not
    # refined: its maximum is not positive).
    with np.errstate(invalid='ignore', divide='ignore'):
      keypoints, score = mmpose_dark_reference.decode(
          np.ascontiguousarray(person.transpose(2, 0, 1)), kernel)
    coords.append(np.where(score[0, :, None] > 0, keypoints[0], 0.))
    scores.append(score[0])
  return np.stack(coords), np.stack(scores)


def _gaussian_maps(rng, shape, sigma=2.):
  """[N, H, W, J] float32: per joint 1-3 Gaussians (sigma 2 px) at sub-pixel centres, some off the map."""
  n, height, width, joints = shape
  count = 3
  centres = rng.uniform([-1, -1], [width, height], (n, joints, count, 2))
  amplitude = rng.uniform(0.2, 1., (n, joints, count))
  amplitude[..., 1:] *= rng.random((n, joints, count - 1)) < 0.5  # 1 to 3 peaks
  x = np.arange(width)[:, None, None, None]  # broadcast against [N, J, count]
  y = np.arange(height)[:, None, None, None, None]
  d2 = (x - centres[..., 0])**2 + (y - centres[..., 1])**2  # [H, W, N, J, count]
  maps = (amplitude * np.exp(-d2 / (2 * sigma**2))).sum(-1)
  return maps.transpose(2, 0, 1, 3).astype(np.float32)


def test_opencv_gaussian_kernel_equals_cv2():
  for size in range(3, 40, 2):
    np.testing.assert_array_equal(heatmap.opencv_gaussian_kernel(size),
                                  cv2.getGaussianKernel(size, 0, cv2.CV_32F)[:, 0],
                                  err_msg=f'size {size}')
  # The fixed tables differ from the sigma formula by far more than float
  # rounding (0.25 vs 0.239 at the ends for 3): the formula alone would be wrong.
  assert heatmap.opencv_gaussian_kernel(3)[0] == 0.25


def _rounding_bound(maps, kernel):
  """[N, J] first-order bound (px) on how far float32 rounding can move the reference's step.

  The step s = -A^-1 g is a function of the 13 log-map values L it reads. If
  each moves by at most e = 4 u (1 + max |L|), u = 2^-24 float32's unit
  roundoff (cv2's blur and log and XLA's differ by about one or two u), g
  moves by at most e per component and A by e per entry, so s moves by at
  most |A^-1|_inf e (1 + |s|_1) to first order. Evaluated in float64 on the
  transcription's own blurred maps; 0 where no step is taken.
  """
  bounds = []
  for person in np.asarray(maps, np.float32):
    person = np.ascontiguousarray(person.transpose(2, 0, 1))
    locs, _ = mmpose_dark_reference.get_heatmap_maximum(person)
    joints, height, width = person.shape
    with np.errstate(invalid='ignore', divide='ignore'):
      blurred = mmpose_dark_reference.gaussian_blur(person.copy(), kernel)
    log_map = np.log(np.maximum(blurred, 1e-10)).astype(np.float64)
    x, y = locs.astype(int).T
    stepped = (x > 1) & (x < width - 2) & (y > 1) & (y < height - 2)
    x, y = np.where(stepped, x, 2), np.where(stepped, y, 2)

    def at(dy, dx):
      return log_map[np.arange(joints), y + dy, x + dx]

    g = np.stack([0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))], -1)
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    stepped &= det != 0
    hessian = np.stack([np.stack([dxx, dxy], -1), np.stack([dxy, dyy], -1)], -2)
    inverse = np.linalg.inv(np.where(stepped[:, None, None], hessian, np.eye(2)))
    step = -np.einsum('jab,jb->ja', inverse, g)
    taps = np.stack([at(a, b) for a in range(-2, 3) for b in range(-2, 3) if abs(a) + abs(b) <= 2])
    e = 4 * 2.**-24 * (1 + np.abs(taps).max(0))
    bound = np.abs(inverse).sum(-1).max(-1) * e * (1 + np.abs(step).sum(-1))
    bounds.append(np.where(stepped, bound, 0.))
  return np.stack(bounds)


# 3: one of OpenCV's fixed tables; 11 and 17: mmpose's kernels for sigma 2 and 3.
@pytest.mark.parametrize('kernel', [3, 11, 17])
def test_dark_equals_mmpose_on_random_maps(kernel):
  rng = np.random.default_rng(kernel)
  n, height, width, joints = 16, 64, 48, 17
  # Half the people uniform in [0, 1), half in [-0.5, 1): negative values,
  # clamped to 1e-10 before the log where the blur leaves them negative.
  low = np.where(np.arange(n) < n // 2, 0., -0.5)[:, None, None, None]
  maps = rng.uniform(low, 1., (n, height, width, joints)).astype(np.float32)
  # Edge cases, one per joint of the first person: peaks on and next to each
  # border (x or y in 0, 1, 2, size-3, size-2, size-1; the step is taken only
  # strictly inside 1 < x < W-2, 1 < y < H-2), all-zero, all-negative and
  # constant maps (first-index argmax), and, in the second person, two equal
  # peaks.
  edge = [(0, 20), (1, 20), (2, 20), (width - 3, 20), (width - 2, 20), (width - 1, 20),
          (20, 0), (20, 1), (20, 2), (20, height - 3), (20, height - 2), (20, height - 1),
          (0, 0), (width - 1, height - 1)]
  for j, (x, y) in enumerate(edge):
    maps[0, y, x, j] = 50.  # above the noise even after the blur
  maps[0, ..., 14] = 0.
  maps[0, ..., 15] = -rng.uniform(0.1, 1., (height, width))
  maps[0, ..., 16] = 0.5
  maps[1, 30, 6, 0] = maps[1, 30, 40, 0] = 50.
  coords, scores = decode_jit(maps, dark_kernel=kernel)
  coords, scores = np.asarray(coords), np.asarray(scores)
  ref_coords, ref_scores = _reference(maps, kernel)
  np.testing.assert_array_equal(scores, ref_scores)
  # On noise the Newton step is often ill-conditioned (a nearly singular
  # Hessian of a nearly flat log map), where rounding alone moves it by more
  # than 1e-4 px. Joints whose rounding bound is below 5e-5 px must agree to
  # 1e-4 px (measured: 1e-5 at most); every joint to 1e-4 px plus twice its
  # bound (measured: errors, less the coordinates' own rounding of ~4e-6 px,
  # stayed within 0.33 bounds).
  bound = _rounding_bound(maps, kernel)
  error = np.abs(coords - ref_coords).max(-1)
  well = bound < 5e-5
  np.testing.assert_allclose(coords[well], ref_coords[well], rtol=0, atol=1e-4)
  assert np.all(error <= 1e-4 + 2 * bound), (error - 2 * bound).max()
  # Not vacuous: measured 26 % (kernel 17), 36 % (11), 72 % (3) of the
  # joints are well conditioned.
  assert well.mean() > 0.15, well.mean()
  # Edge cases, on their own values: no step on the outer two rows and
  # columns, (0, 0) for maps without a positive value or with a constant one,
  # the first of two equal maxima.
  np.testing.assert_array_equal(coords[0, [0, 1, 4, 5, 6, 7, 10, 11, 12, 13]],
                                [(0, 20), (1, 20), (width - 2, 20), (width - 1, 20),
                                 (20, 0), (20, 1), (20, height - 2), (20, height - 1),
                                 (0, 0), (width - 1, height - 1)])
  np.testing.assert_array_equal(coords[0, 14:], np.zeros((3, 2)))
  assert well[0, :14].all(), bound[0]  # compared to 1e-4 px: the peaks dominate the noise
  assert coords[1, 0, 0] < 12 and well[1, 0]


@pytest.mark.parametrize('kernel', [3, 11, 17])
def test_dark_equals_mmpose_on_gaussian_maps(kernel):
  rng = np.random.default_rng(kernel)
  maps = _gaussian_maps(rng, (16, 64, 48, 17))  # the shape of the test above: one compilation
  coords, scores = decode_jit(maps, dark_kernel=kernel)
  ref_coords, ref_scores = _reference(maps, kernel)
  np.testing.assert_array_equal(np.asarray(scores), ref_scores)
  np.testing.assert_allclose(np.asarray(coords), ref_coords, rtol=0, atol=1e-4)
  # Not a trivial agreement: most joints moved off the integer argmax.
  moved = np.abs(ref_coords - np.round(ref_coords)).max(-1) > 0.05
  assert moved.mean() > 0.8, moved.mean()


def _coco_crop_joints():
  """Visible keypoints of the bundled COCO people in a 192x256 crop of each box: ([N, 17, 2], [N, 17])."""
  annotations = json.loads(COCO_JSON.read_text())['annotations']
  joints, visible = [], []
  for a in annotations:
    if a['num_keypoints'] == 0:
      continue
    x, y, w, h = a['bbox']
    # The usual top-down box: centred on the person, widened to 3:4, x1.25.
    w, h = max(w, 0.75 * h), max(h, w / 0.75)
    scale = 192 / (1.25 * w)
    kp = np.asarray(a['keypoints'], np.float64).reshape(17, 3)
    crop = (kp[:, :2] - [x + a['bbox'][2] / 2, y + a['bbox'][3] / 2]) * scale + [96, 128]
    inside = np.all((crop >= 0) & (crop < [192, 256]), -1)
    joints.append(crop)
    visible.append((kp[:, 2] > 0) & inside)
  return np.asarray(joints, np.float32), np.asarray(visible, np.float32)


def test_dark_beats_argmax_on_encoded_coco_people():
  joints, visible = _coco_crop_joints()
  # `encode` centres each Gaussian on an integer pixel (the seed's
  # int(x / stride + 0.5)), so at its own resolution both decoders can only
  # find that pixel. Encoding at stride 1 and averaging 4x4 blocks gives
  # 64x48 maps whose Gaussians (sigma ~2 px) sit at known quarter-pixel
  # positions: fine pixel centre m lies at (m - 1.5) / 4 on the coarse grid.
  fine, weight = encode_jit(joints, visible, image_size=(192, 256),
                            heatmap_size=(192, 256), sigma=8)
  n = joints.shape[0]
  maps = np.asarray(fine).reshape(n, 64, 4, 48, 4, 17).mean((2, 4))
  truth = (np.trunc(joints + 0.5) - 1.5) / 4
  valid = np.asarray(weight) > 0
  assert valid.sum() == 181  # the sample's visible keypoints inside their crops
  plain = np.asarray(decode_jit(maps)[0])
  dark = np.asarray(decode_jit(maps, dark_kernel=11)[0])
  plain_error = np.linalg.norm(plain - truth, axis=-1)[valid]
  dark_error = np.linalg.norm(dark - truth, axis=-1)[valid]
  # Measured over the 181 visible keypoints: plain 0.1768 px (= sqrt(2) / 8: a
  # quarter-pixel step lands 1/8 px from any centre at an odd eighth), DARK
  # 0.00023 px (90th percentile 0.0003; only two joints, 2.6 and 4.1 px from
  # the map's bottom edge, where their Gaussians are cut, are off by more
  # than 0.003: 0.33 and 0.04 px).
  assert np.median(plain_error) == pytest.approx(np.sqrt(2) / 8, abs=1e-3)
  assert np.median(dark_error) < 1e-3
  # Against the annotated sub-pixel positions themselves, which the stride-1
  # encoder rounds to 1/8 coarse pixel first: plain 0.207, DARK 0.098 px
  # (DARK's error there is that rounding).
  annotated = (joints - 1.5) / 4
  plain_error = np.linalg.norm(plain - annotated, axis=-1)[valid]
  dark_error = np.linalg.norm(dark - annotated, axis=-1)[valid]
  assert np.median(plain_error) == pytest.approx(0.207, abs=0.01)
  assert np.median(dark_error) == pytest.approx(0.098, abs=0.01)
  np.testing.assert_allclose(dark, _reference(maps, 11)[0], rtol=0, atol=1e-4)

  # At the encoder's own resolution both return its integer centre wherever
  # the Gaussian's window (3 sigma = 6 px) lies inside the map, where the
  # blurred map stays symmetric about it.
  coarse, weight = encode_jit(joints, visible, image_size=(192, 256),
                              heatmap_size=(48, 64), sigma=2)
  centre = np.trunc(joints / 4 + 0.5)
  inside = (np.asarray(weight) > 0) & np.all((centre >= 6) & (centre <= [41, 57]), -1)
  assert inside.sum() == 177
  dark = np.asarray(decode_jit(coarse, dark_kernel=11)[0])
  np.testing.assert_allclose(dark[inside], centre[inside], rtol=0, atol=1e-4)
  np.testing.assert_array_equal(np.asarray(decode_jit(coarse)[0])[inside], centre[inside])


def test_jit_equals_eager_and_any_batch_shape():
  # [16, 64, 48, 17], the shape of the tests above (one compilation), and
  # eagerly as [4, 4, 64, 48, 17]: leading dimensions are batch dimensions.
  maps = _gaussian_maps(np.random.default_rng(1), (16, 64, 48, 17))
  jitted = decode_jit(maps, dark_kernel=11)
  eager = heatmap.decode(jnp.asarray(maps).reshape(4, 4, 64, 48, 17), dark_kernel=11)
  assert eager[0].shape == (4, 4, 17, 2) and eager[1].shape == (4, 4, 17)
  # Same operations; XLA may fuse and reorder float32 arithmetic, hence not bit for bit.
  np.testing.assert_allclose(np.asarray(eager[0]).reshape(16, 17, 2), np.asarray(jitted[0]),
                             rtol=0, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(eager[1]).reshape(16, 17), np.asarray(jitted[1]))
  # One [H, W, J] map decodes as its person of the batch.
  single = decode_jit(maps[9], dark_kernel=11)
  assert single[0].shape == (17, 2)
  np.testing.assert_allclose(np.asarray(single[0]), np.asarray(jitted[0][9]), rtol=0, atol=1e-5)
  # The step is taken: coordinates are sub-pixel, not the argmax.
  assert np.abs(np.asarray(jitted[0]) - np.round(np.asarray(jitted[0]))).max() > 0.1


@pytest.mark.parametrize('maps,kernel,message', [
    (np.zeros((64, 48)), 11, r'heatmaps must be \[\.\.\., H, W, J\] \(rank 3 or more\), got shape \(64, 48\)'),
    (np.zeros(5), None, r'heatmaps must be \[\.\.\., H, W, J\] \(rank 3 or more\), got shape \(5,\)'),
    (np.zeros((64, 48, 17)), 4, r'dark_kernel must be None or an odd integer >= 3 .*got 4'),
    (np.zeros((64, 48, 17)), 1, r'dark_kernel must be None or an odd integer >= 3 .*got 1'),
    (np.zeros((64, 48, 17)), 11.0, r'dark_kernel must be None or an odd integer >= 3 .*got 11\.0'),
    (np.zeros((64, 48, 17)), True, r'dark_kernel .*got True'),
])
def test_bad_input_raises(maps, kernel, message):
  with pytest.raises(ValueError, match=message):
    heatmap.decode(maps, dark_kernel=kernel)
