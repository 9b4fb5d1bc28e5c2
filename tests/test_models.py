"""jaxpose.models: the biases the optimizer freezes are exactly those BatchNorm cancels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose import models

TINY = {
    # A narrow layer2 (64 planes): the float64 gradient stays cheap.
    'hourglass': {'arch': 'hourglass', 'num_stacks': 2, 'num_blocks': 1, 'num_joints': 5,
                  'num_features': 8, 'layer2_features': 64},
    'lightweight_openpose': {'arch': 'lightweight_openpose', 'num_refinement_stages': 1},
}


@pytest.mark.slow  # 1-3 min per family (float64 gradients of whole models); the optimizer's
# freezing itself is tested by default (test_train.py, Adam leaves the biases)
@pytest.mark.parametrize('arch', sorted(TINY))
def test_frozen_biases_are_those_with_zero_gradient_in_exact_arithmetic(arch):
  # In float64 a cancelled bias's gradient is rounding noise (< 1e-9); every
  # other conv bias moves a smooth function of the outputs (> 1e-6). Random
  # biases and a non-linear loss keep the second kind away from zero.
  with jax.enable_x64(True):
    model = models.create_model(TINY[arch])
    images = jax.random.normal(jax.random.key(0), (3, 64, 64, 3), jnp.float64)
    variables = model.init(jax.random.key(1), images, train=False)
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
    leaves, treedef = jax.tree_util.tree_flatten(variables['params'])
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = treedef.unflatten([a + 0.1 * jax.random.normal(k, a.shape, a.dtype)
                                for a, k in zip(leaves, keys)])

    def loss(params):
      outputs, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                               images, train=True, mutable=['batch_stats'])
      return sum(jnp.sum(jnp.sin(3 * out + i))
                 for i, out in enumerate(jax.tree_util.tree_leaves(outputs)))

    grads = jax.tree_util.tree_map(np.asarray, jax.jit(jax.grad(loss))(params))
  frozen = models.batchnorm_cancelled_biases(arch, params)
  num_frozen = num_biases = 0
  for (path, grad), is_frozen in zip(jax.tree_util.tree_flatten_with_path(grads)[0],
                                     jax.tree_util.tree_leaves(frozen)):
    if is_frozen:
      assert path[-1].key == 'bias'
      assert np.abs(grad).max() < 1e-9, jax.tree_util.keystr(path)
    elif path[-1].key == 'bias':
      assert np.abs(grad).max() > 1e-6, jax.tree_util.keystr(path)
    num_frozen += bool(is_frozen)
    num_biases += path[-1].key == 'bias'
  assert 0 < num_frozen < num_biases


def test_unknown_arch_is_named():
  with pytest.raises(ValueError, match="'resnet'"):
    models.batchnorm_cancelled_biases('resnet', {})
