"""Activation memory of a train step's backward pass with and without `model.remat`.

For each model, two figures per setting: the bytes that reverse mode keeps
from the forward pass (`jaxpose.training.mfu.saved_activation_bytes`, JAX's own
account, the same on every backend, computed from shapes alone), and with
`--compile` the compiled step's temporaries and peak on the present backend
(`compiled.memory_analysis()`; XLA:CPU's do not shrink with remat).

  python scripts/bench_remat_memory.py                      # hg2, hg8, lwop at batch 8
  python scripts/bench_remat_memory.py --models hg8 --compile
"""

import argparse
import functools

import jax
import jax.numpy as jnp

from jaxpose import config as config_lib
from jaxpose import models
from jaxpose.training import mfu

# name -> (model description, input side): the sizes.
MODELS = {
    'hg2': (config_lib.hourglass_model(2).to_dict(), 256),
    'hg8': (config_lib.hourglass_model(8).to_dict(), 256),
    'lwop': (config_lib.lightweight_openpose_model().to_dict(), 368),
}
MIB = 2 ** 20


def loss_fn(model, images):
  """(params, batch_stats) -> a scalar of every output, as a train step differentiates."""
  def loss(params, batch_stats):
    outputs, _ = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                             train=True, mutable=['batch_stats'])
    return sum(jnp.sum(maps ** 2) for maps in jax.tree_util.tree_leaves(outputs))
  return loss


def measure(name: str, remat: bool, batch: int, compile_step: bool) -> dict:
  description, side = MODELS[name]
  model = models.create_model(dict(description, remat=remat))
  images = jax.ShapeDtypeStruct((batch, side, side, 3), jnp.float32)
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                             images)
  # The images are closed over: concrete zeros, as the backward pass needs none of their values.
  loss = loss_fn(model, jnp.zeros(images.shape, images.dtype))
  row = {'model': name, 'remat': remat, 'batch': batch, 'side': side,
         'kept_mib': mfu.saved_activation_bytes(loss, variables['params'],
                                                variables['batch_stats']) / MIB}
  if compile_step:
    compiled = jax.jit(jax.grad(loss)).lower(variables['params'],
                                             variables['batch_stats']).compile()
    memory = compiled.memory_analysis()
    row['temp_mib'] = memory.temp_size_in_bytes / MIB
    row['peak_mib'] = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                       + memory.temp_size_in_bytes - memory.alias_size_in_bytes) / MIB
  return row


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', nargs='+', choices=sorted(MODELS), default=['hg2', 'hg8', 'lwop'])
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--compile', action='store_true',
                      help="also compile each gradient and report XLA's memory analysis")
  args = parser.parse_args(argv)
  print(f'backend {jax.default_backend()} ({jax.devices()[0].device_kind}), '
        f'batch {args.batch_size}')
  header = '| model | input | kept for backward, MiB: no remat | remat | remat / none |'
  if args.compile:
    header += ' compiled temporaries, MiB: no remat | remat | compiled peak, MiB: no remat | remat |'
  print(header)
  print('|' + ' --- |' * (header.count('|') - 1))
  rows = []
  for name in args.models:
    plain, remat = (measure(name, flag, args.batch_size, args.compile) for flag in (False, True))
    rows += [plain, remat]
    line = (f'| {name} | {plain["side"]}x{plain["side"]} | {plain["kept_mib"]:.0f} | '
            f'{remat["kept_mib"]:.0f} | {remat["kept_mib"] / plain["kept_mib"]:.2f} |')
    if args.compile:
      line += (f' {plain["temp_mib"]:.0f} | {remat["temp_mib"]:.0f} | {plain["peak_mib"]:.0f} | '
               f'{remat["peak_mib"]:.0f} |')
    print(line, flush=True)
  return rows


if __name__ == '__main__':
  main()
