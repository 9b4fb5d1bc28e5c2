"""jaxpose.models.layers: the depthwise conv by shifts and the 1x1 conv by dot are the convs they replace."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.models import layers


def _variables(channels: int, seed: int, use_bias: bool = True) -> dict:
  rng = np.random.default_rng(seed)
  params = {'kernel': jnp.asarray(rng.normal(size=(3, 3, 1, channels)), jnp.float32)}
  if use_bias:
    params['bias'] = jnp.asarray(rng.normal(size=channels), jnp.float32)
  return {'params': params}


@pytest.mark.parametrize('stride,dilation,height,width', [
    (1, 1, 9, 12), (2, 1, 9, 12), (2, 1, 8, 10), (1, 2, 7, 11), (2, 2, 10, 9)])
def test_shifts_equal_the_grouped_conv(stride, dilation, height, width):
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, height, width, 6)), jnp.float32)
  variables = _variables(6, seed=1)
  outputs = {}
  for by_shifts in (True, False):
    conv = layers.DepthwiseConv3x3(stride, dilation, by_shifts=by_shifts)
    outputs[by_shifts] = np.asarray(conv.apply(variables, images))
  # Padded by the dilation: ceil(size / stride) out, as PyTorch's depthwise convs.
  assert outputs[True].shape == (2, -(-height // stride), -(-width // stride), 6)
  np.testing.assert_allclose(outputs[True], outputs[False], rtol=0, atol=1e-5)
  # And the grouped conv is a per-channel correlation: channel 3 by hand.
  padded = np.pad(np.asarray(images), ((0, 0), (dilation,) * 2, (dilation,) * 2, (0, 0)))
  kernel = np.asarray(variables['params']['kernel'])[:, :, 0, 3]
  expected = np.zeros_like(outputs[False][..., 3])
  for y in range(expected.shape[1]):
    for x in range(expected.shape[2]):
      window = padded[:, y * stride:y * stride + 2 * dilation + 1:dilation,
                      x * stride:x * stride + 2 * dilation + 1:dilation, 3]
      expected[:, y, x] = (window * kernel).sum(axis=(1, 2))
  expected += np.asarray(variables['params']['bias'])[3]
  np.testing.assert_allclose(outputs[True][..., 3], expected, rtol=0, atol=1e-5)


def test_gradients_by_shifts_equal_the_grouped_conv():
  images = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8, 8, 4)), jnp.float32)
  variables = _variables(4, seed=3, use_bias=False)
  weights = jnp.asarray(np.random.default_rng(4).normal(size=(2, 4, 4, 4)), jnp.float32)
  gradients = {}
  for by_shifts in (True, False):
    conv = layers.DepthwiseConv3x3(2, 1, use_bias=False, by_shifts=by_shifts)
    loss = lambda v, x, conv=conv: jnp.sum(conv.apply(v, x) * weights)
    gradients[by_shifts] = jax.grad(loss, argnums=(0, 1))(variables, images)
  for ours, expected in zip(jax.tree_util.tree_leaves(gradients[True]),
                            jax.tree_util.tree_leaves(gradients[False]), strict=True):
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def _assert_same_parameters_and_function(ours: nn.Module, flax_conv: nn.Module,
                                         images: jax.Array) -> None:
  """Both modules initialise the same parameters to the same values and compute the same outputs."""
  ours_variables = ours.init(jax.random.key(7), images)
  theirs = flax_conv.init(jax.random.key(7), images)
  assert jax.tree_util.tree_structure(ours_variables) == jax.tree_util.tree_structure(theirs)
  for a, b in zip(jax.tree_util.tree_leaves(ours_variables), jax.tree_util.tree_leaves(theirs)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(ours.apply(ours_variables, images),
                             flax_conv.apply(theirs, images), atol=1e-6)


def test_parameters_and_their_initial_values_are_those_of_a_grouped_nn_conv():
  # So that checkpoints written before this layer existed, and converted
  # upstream weights, load unchanged.
  class Ours(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.DepthwiseConv3x3(2, 2, name='dw')(x)

  class Flax(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Conv(5, (3, 3), strides=(2, 2), padding=((2, 2), (2, 2)), kernel_dilation=(2, 2),
                     feature_group_count=5, name='dw')(x)

  _assert_same_parameters_and_function(Ours(), Flax(), jnp.ones((1, 10, 10, 5)))


def test_by_default_the_cpu_backend_computes_by_shifts():
  images = jnp.ones((1, 6, 6, 3))
  variables = _variables(3, seed=5)

  def primitives(by_shifts):
    conv = layers.DepthwiseConv3x3(by_shifts=by_shifts)
    jaxpr = jax.make_jaxpr(lambda x: conv.apply(variables, x))(images)
    return {equation.primitive.name for equation in jaxpr.eqns}

  assert jax.default_backend() == 'cpu'
  assert 'conv_general_dilated' not in primitives(None)
  assert 'conv_general_dilated' not in primitives(True)
  assert 'conv_general_dilated' in primitives(False)


def test_pointwise_by_dot_equals_the_conv_in_value_and_gradient():
  rng = np.random.default_rng(8)
  images = jnp.asarray(rng.normal(size=(2, 5, 7, 6)), jnp.float32)
  variables = {'params': {'kernel': jnp.asarray(rng.normal(size=(1, 1, 6, 4)), jnp.float32),
                          'bias': jnp.asarray(rng.normal(size=4), jnp.float32)}}
  weights = jnp.asarray(rng.normal(size=(2, 5, 7, 4)), jnp.float32)
  outputs, gradients = {}, {}
  for by_dot in (True, False):
    conv = layers.PointwiseConv(4, by_dot=by_dot)
    outputs[by_dot] = np.asarray(conv.apply(variables, images))
    loss = lambda v, x, conv=conv: jnp.sum(conv.apply(v, x) * weights)
    gradients[by_dot] = jax.grad(loss, argnums=(0, 1))(variables, images)
  # The conv is a per-pixel matrix product: one pixel by hand.
  pixel = np.asarray(images)[1, 3, 2] @ np.asarray(variables['params']['kernel'])[0, 0]
  np.testing.assert_allclose(outputs[False][1, 3, 2], pixel + variables['params']['bias'],
                             rtol=1e-5)
  np.testing.assert_allclose(outputs[True], outputs[False], rtol=0, atol=1e-5)
  for ours, expected in zip(jax.tree_util.tree_leaves(gradients[True]),
                            jax.tree_util.tree_leaves(gradients[False]), strict=True):
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_pointwise_parameters_and_initial_values_are_those_of_an_nn_conv():
  class Ours(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.PointwiseConv(7, use_bias=False, name='a')(layers.PointwiseConv(5, name='b')(x))

  class Flax(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Conv(7, (1, 1), use_bias=False, name='a')(nn.Conv(5, (1, 1), name='b')(x))

  images = jnp.asarray(np.random.default_rng(9).normal(size=(1, 4, 4, 3)), jnp.float32)
  _assert_same_parameters_and_function(Ours(), Flax(), images)


def test_by_default_the_cpu_backend_computes_pointwise_by_dot():
  images = jnp.ones((1, 3, 3, 2))
  variables = layers.PointwiseConv(4).init(jax.random.key(0), images)

  def primitives(by_dot):
    conv = layers.PointwiseConv(4, by_dot=by_dot)
    jaxpr = jax.make_jaxpr(lambda x: conv.apply(variables, x))(images)
    return {equation.primitive.name for equation in jaxpr.eqns}

  assert jax.default_backend() == 'cpu'
  assert 'conv_general_dilated' not in primitives(None) and 'dot_general' in primitives(None)
  assert 'conv_general_dilated' in primitives(False)


@pytest.mark.parametrize('layer,fast_primitive', [
    (layers.PointwiseConv(4), 'dot_general'),
    (layers.DepthwiseConv3x3(2, 2), 'mul'),
])
def test_portable_convs_switches_the_traced_form_to_the_conv(layer, fast_primitive):
  images = jnp.asarray(np.random.default_rng(10).normal(size=(2, 7, 9, 3)), jnp.float32)
  variables = layer.init(jax.random.key(0), images)
  traces = []

  def apply(x):
    traces.append(x)
    return layer.apply(variables, x)

  # Traces a new function each time: JAX caches traces per Python function,
  # whatever the context (see `layers.portable_convs`).
  def primitives():
    jaxpr = jax.make_jaxpr(lambda x: layer.apply(variables, x))(images)
    return {equation.primitive.name for equation in jaxpr.eqns}

  assert jax.default_backend() == 'cpu'
  outside = primitives()
  fast = np.asarray(jax.jit(apply)(images))  # `apply` traced here, outside the context
  with layers.portable_convs():
    inside = primitives()
    portable = np.asarray(jax.jit(lambda x: layer.apply(variables, x))(images))
    # Not traced again: `apply` keeps its CPU form, hence export's new function.
    traced = len(traces)
    np.testing.assert_array_equal(jax.jit(apply)(images), fast)
    assert len(traces) == traced
  assert fast_primitive in outside and 'conv_general_dilated' not in outside
  assert 'conv_general_dilated' in inside and fast_primitive not in inside
  assert primitives() == outside  # the context is left as it was found
  np.testing.assert_allclose(fast, portable, rtol=0, atol=1e-5)


def test_explicit_form_overrides_portable_convs():
  images = jnp.ones((1, 4, 4, 2))
  variables = layers.PointwiseConv(3).init(jax.random.key(0), images)
  layer = layers.PointwiseConv(3, by_dot=True)
  with layers.portable_convs():
    jaxpr = jax.make_jaxpr(lambda x: layer.apply(variables, x))(images)
  assert 'dot_general' in {equation.primitive.name for equation in jaxpr.eqns}


def test_both_forms_compute_in_float64_under_x64_as_nn_conv_does():
  with jax.enable_x64(True):
    images = jax.random.normal(jax.random.key(0), (1, 6, 6, 4), jnp.float64)
    for layer, flag in ((layers.PointwiseConv, 'by_dot'), (layers.DepthwiseConv3x3, 'by_shifts')):
      kwargs = {'features': 3} if layer is layers.PointwiseConv else {}
      variables = layer(**kwargs).init(jax.random.key(1), images)  # float32 parameters
      outputs = [layer(**kwargs, **{flag: fast}).apply(variables, images) for fast in (True, False)]
      assert all(out.dtype == jnp.float64 for out in outputs), layer.__name__
      np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
