"""jaxpose.models.staf and its ONNX export: the recurrent STAF model, run frame by frame."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest

from jaxpose import approaches, models
from jaxpose.deploy import export
from jaxpose.models import openpose, staf
import random_weights

# A tiny model (quarter-width backbone, 8-channel stages) on 64x64 frames: 8x8 maps.
TINY = dict(num_refinement_stages=1, num_channels=8, num_heatmaps=19, num_pafs=38,
            num_taf_links=33, taf_channels=8, num_taf_blocks=1, backbone_width=0.25)
SIZE = 64
TOLERANCE = 1e-4  # of the output's largest magnitude, as tests/test_export.py


def _randomized(model, input_shape: tuple[int, ...], seed: int = 0) -> dict:
  """`random_weights.random_variables` of `model` for inputs of `input_shape`."""
  return random_weights.random_variables(model, jnp.zeros(input_shape), seed=seed)


def _random_previous(model, batch: int, seed: int) -> dict[str, np.ndarray]:
  """Previous maps of the right shapes, of the magnitude of heatmaps, PAFs and TAFs (<= 1)."""
  rng = np.random.default_rng(seed)
  return {name: rng.uniform(-1, 1, shape).astype(np.float32)
          for name, shape in model.previous_shapes(batch, SIZE, SIZE).items()}


@pytest.fixture(scope='module')
def tiny():
  """(model, variables, jitted apply(variables, model input, previous), model input [2, 64, 64, 3])."""
  model = staf.StafOpenPose(**TINY)
  variables = _randomized(model, (1, SIZE, SIZE, 3))
  apply = jax.jit(lambda v, x, previous: model.apply(v, x, previous, train=False))
  images = np.random.default_rng(1).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
  return model, variables, apply, images


def test_output_names_and_shapes(tiny):
  model, variables, apply, images = tiny
  outputs = apply(variables, images, None)
  # jit returns dicts with sorted keys; `output_names` is the order (of the ONNX outputs).
  assert model.output_names == [
      'heatmaps_stage0', 'pafs_stage0', 'heatmaps_stage1', 'pafs_stage1', 'tafs_stage1']
  assert sorted(outputs) == sorted(model.output_names)
  assert {name: maps.shape for name, maps in outputs.items()} == {
      'heatmaps_stage0': (2, 8, 8, 19), 'pafs_stage0': (2, 8, 8, 38),
      'heatmaps_stage1': (2, 8, 8, 19), 'pafs_stage1': (2, 8, 8, 38),
      'tafs_stage1': (2, 8, 8, 66)}
  assert model.previous_of(outputs).keys() == {'heatmaps', 'pafs', 'tafs'}
  assert model.previous_of(outputs)['tafs'] is outputs['tafs_stage1']
  # Without refinement stages the TAFs take the initial stage's index.
  single = staf.StafOpenPose(**{**TINY, 'num_refinement_stages': 0, 'num_taf_links': 5})
  shapes = jax.eval_shape(lambda: single.init_with_output(
      jax.random.key(0), jnp.zeros((1, 32, 48, 3)))[0])
  assert {name: maps.shape for name, maps in shapes.items()} == {
      'heatmaps_stage0': (1, 4, 6, 19), 'pafs_stage0': (1, 4, 6, 38), 'tafs_stage0': (1, 4, 6, 10)}


def test_first_frame_without_previous_is_previous_zeros(tiny):
  model, variables, apply, images = tiny
  zeros = {name: np.zeros(shape, np.float32)
           for name, shape in model.previous_shapes(2, SIZE, SIZE).items()}
  first, with_zeros = apply(variables, images, None), apply(variables, images, zeros)
  for name in model.output_names:
    np.testing.assert_array_equal(first[name], with_zeros[name])
  assert np.abs(first['tafs_stage1']).max() > 0.1  # not trivially zero


def test_previous_maps_change_the_tafs_only(tiny):
  model, variables, apply, images = tiny
  base = apply(variables, images, _random_previous(model, 2, seed=2))
  for name, maps in _random_previous(model, 2, seed=3).items():
    # Each previous map alone moves the TAFs: none is ignored.
    previous = {**_random_previous(model, 2, seed=2), name: maps}
    outputs = apply(variables, images, previous)
    change = np.abs(outputs['tafs_stage1'] - base['tafs_stage1']).max()
    assert change > 0.01 * np.abs(base['tafs_stage1']).max(), name
    # The heatmaps and PAFs are this frame's alone (the pose stages do not see
    # the previous frame), bit for bit.
    for output in model.output_names[:-1]:
      np.testing.assert_array_equal(outputs[output], base[output])


def _staf_and_lightweight_openpose(seed: int) -> tuple:
  """A full-width STAF model and its variables; the Lightweight OpenPose of the same options and its part of them."""
  options = dict(num_refinement_stages=1, num_channels=8)
  model = staf.StafOpenPose(**options, taf_channels=8, num_taf_blocks=1)
  lwop = openpose.LightweightOpenPose(**options)
  variables = _randomized(model, (1, 32, 32, 3), seed=seed)
  lwop_variables = {collection: {name: tree for name, tree in trees.items() if name != 'taf_stage'}
                    for collection, trees in variables.items()}
  return model, variables, lwop, lwop_variables


def test_pose_stages_have_lightweight_openpose_variables():
  # At full backbone width the STAF model holds a Lightweight OpenPose's
  # variables under the same names, so its checkpoints initialise the pose
  # stages; only 'taf_stage' is new.
  _, _, lwop, lwop_variables = _staf_and_lightweight_openpose(seed=4)
  lwop_shapes = jax.eval_shape(lambda: lwop.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  shape_of = lambda tree: jax.tree_util.tree_map(lambda leaf: tuple(leaf.shape), tree)
  assert shape_of(lwop_variables) == shape_of(flax.core.unfreeze(lwop_shapes))


@pytest.mark.slow  # ~10 s: two more compilations, at full backbone width
def test_pose_stages_compute_lightweight_openpose():
  model, variables, lwop, lwop_variables = _staf_and_lightweight_openpose(seed=4)
  images = np.random.default_rng(5).normal(size=(1, 32, 32, 3)).astype(np.float32)
  ours = jax.jit(lambda v, x: model.apply(v, x))(variables, images)
  stages = jax.jit(lambda v, x: lwop.apply(v, x))(lwop_variables, images)
  for i, (heatmaps, pafs) in enumerate(stages):
    assert np.abs(pafs).max() > 0.1
    np.testing.assert_allclose(ours[f'heatmaps_stage{i}'], heatmaps, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[f'pafs_stage{i}'], pafs, rtol=0, atol=1e-6)


def test_taf_stage_biases_before_batchnorm_are_cancelled(tiny):
  # The family rule (`models.batchnorm_cancelled_biases`) covers the TAF stage:
  # its residual block's 3x3 conv feeds a BatchNorm, its 1x1s and head do not.
  model, variables, _, _ = tiny
  block = variables['params']['taf_stage']['trunk_0']
  assert model.bias_is_cancelled(('taf_stage', 'trunk_0', 'trunk_0_0', 'bias'), block)
  assert not model.bias_is_cancelled(('taf_stage', 'trunk_0', 'initial_0', 'bias'), block)
  assert not model.bias_is_cancelled(('taf_stage', 'tafs_0_0', 'bias'),
                                     variables['params']['taf_stage'])


def test_bad_previous_is_named(tiny):
  model, variables, _, images = tiny
  previous = _random_previous(model, 2, seed=6)
  shapes = lambda p: jax.eval_shape(lambda: model.apply(variables, images, p))
  with pytest.raises(ValueError, match=r"previous: expected the keys \['heatmaps', 'pafs', "
                     r"'tafs'\], got \['heatmaps', 'pafs'\]"):
    shapes({'heatmaps': previous['heatmaps'], 'pafs': previous['pafs']})
  with pytest.raises(ValueError, match=r"previous\['tafs'\]: expected shape \(2, 8, 8, 66\).*"
                     r"got \(2, 8, 8, 64\)"):
    shapes({**previous, 'tafs': previous['tafs'][..., :64]})
  with pytest.raises(ValueError, match='backbone_width must be in'):
    staf.StafOpenPose(backbone_width=1.5).init(jax.random.key(0), images)


@pytest.fixture(scope='module')
def tiny_onnx(tiny, tmp_path_factory):
  model, variables, _, _ = tiny
  path = str(tmp_path_factory.mktemp('staf') / 'staf.onnx')
  return export.export_onnx(variables, _description(model), path, input_size=(SIZE, SIZE),
                            check=False)


def _description(model: staf.StafOpenPose) -> dict:
  """The model description a workdir of `model` holds (trained at SIZE x SIZE)."""
  return models.describe(model, model.DEFAULT_NORMALIZATION, (SIZE, SIZE))


def test_onnx_clip_fed_its_own_outputs_matches_jax(tiny, tiny_onnx):
  model, variables, apply, _ = tiny
  session = ort.InferenceSession(tiny_onnx, providers=['CPUExecutionProvider'])
  assert [(i.name, i.shape) for i in session.get_inputs()] == [
      ('images', ['N', 64, 64, 3]), ('previous_heatmaps', ['N', 8, 8, 19]),
      ('previous_pafs', ['N', 8, 8, 38]), ('previous_tafs', ['N', 8, 8, 66])]
  assert [o.name for o in session.get_outputs()] == model.output_names
  feedback = approaches.for_description(_description(model)).export_signature(
      (SIZE, SIZE)).feedback
  assert feedback == {'heatmaps_stage1': 'previous_heatmaps', 'pafs_stage1': 'previous_pafs',
                      'tafs_stage1': 'previous_tafs'}
  # A 5-frame clip: a random image panning right by 4 pixels a frame.
  scene = np.random.default_rng(7).uniform(0, 255, (2, SIZE, SIZE + 32, 3)).astype(np.float32)
  clip = [scene[:, :, 4 * t:4 * t + SIZE] for t in range(5)]
  ours = {value.name: np.zeros((2, *value.shape[1:]), np.float32)
          for value in session.get_inputs()[1:]}
  theirs = None
  for t, images in enumerate(clip):
    onnx_outputs = dict(zip(model.output_names, session.run(None, {'images': images, **ours})))
    # JAX, its own outputs fed back: (BGR - 128) / 256 in, written out.
    jax_outputs = apply(variables, (images[..., ::-1] - 128.0) / 256.0, theirs)
    if t == 1:  # the feedback matters: zeros instead would be far off
      alone = apply(variables, (images[..., ::-1] - 128.0) / 256.0, None)['tafs_stage1']
      taf_scale = np.abs(jax_outputs['tafs_stage1']).max()
      assert np.abs(alone - jax_outputs['tafs_stage1']).max() > 100 * TOLERANCE * taf_scale
    for name in model.output_names:
      expected = np.asarray(jax_outputs[name])
      np.testing.assert_allclose(onnx_outputs[name], expected, rtol=0,
                                 atol=TOLERANCE * np.abs(expected).max(), err_msg=f'{name} {t}')
    ours = {feedback[name]: onnx_outputs[name] for name in feedback}
    theirs = model.previous_of(jax_outputs)


def test_recurrent_check_reports_a_mismatch_per_output(tiny, tiny_onnx):
  model, variables, _, _ = tiny
  approach = approaches.for_description(_description(model))
  forward = approach.export_fn(variables)
  signature = approach.export_signature((SIZE, SIZE))
  names = signature.outputs
  assert names == model.output_names

  def off_by_1e3(*inputs):  # the first stage's heatmaps (not fed back) 0.1% too large
    outputs = forward(*inputs)
    return (1.001 * outputs[0], *outputs[1:])
  errors = export.check_recurrent_onnx(tiny_onnx, off_by_1e3, signature.feedback,
                                       (2, SIZE, SIZE, 3), num_frames=2)
  assert errors['heatmaps_stage0'] == pytest.approx(1e-3 / 1.001, rel=0.02)
  assert max(errors[name] for name in names[1:]) < TOLERANCE
  with pytest.raises(ValueError, match='input_size: staf needs .* multiples of 8, got 60x64'):
    export.export_onnx(variables, _description(model), '/nonexistent/x.onnx', input_size=(60, 64))
  with pytest.raises(ValueError, match='exported channels last only'):
    export.export_onnx(variables, _description(model), '/nonexistent/x.onnx', nchw=True)
