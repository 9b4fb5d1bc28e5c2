"""Device plumbing: one per-device step body, run under pmap, shard_map or on one device.

A step body is written once, per device, with explicit collectives over
`BATCH_AXIS` (`lax.pmean` of gradients, metrics and BatchNorm statistics).
`DataParallel` places the train state and the batches, and wraps the body:

- 'pmap': `jax.pmap` over the local devices (the design card's path); the
  state carries a leading device axis.
- 'shard_map': `jax.shard_map` over a `Mesh` of all devices of all hosts (the
  multi-host path for TPU pods); the state is a replicated global array and
  each host feeds only its slice of the global batch.
- 'none': `jax.jit` on one device; collectives are skipped (axis_name None).

All three give the same update for the same global batch (tested).
`prefetch_to_device` places batches on the devices ahead of use.
"""

import collections
from collections.abc import Callable, Iterator
import itertools
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

BATCH_AXIS = 'batch'
MODES = ('pmap', 'shard_map', 'none')


def pmean(tree: Any, axis_name: str | None) -> Any:
  """Mean over the batch axis of every leaf, or the tree itself on one device."""
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def psum(tree: Any, axis_name: str | None) -> Any:
  """Sum over the batch axis of every leaf, or the tree itself on one device."""
  return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def as_per_device(params: Any, axis_name: str | None) -> Any:
  """Marks replicated params as device-varying before differentiating.

  Under shard_map's (default) varying-manual-axes checks, the gradient of a
  replicated input is already summed over the devices; under pmap it is not.
  Casting the params to 'varying' first makes both give per-device gradients,
  which the body then averages with `pmean`, so one body serves both.
  """
  if axis_name is None:
    return params
  return jax.tree_util.tree_map(
      lambda p: jax.lax.pcast(p, axis_name, to='varying'), params)


class DataParallel:
  """Places state and batches on devices and compiles per-device step bodies."""

  def __init__(self, mode: str, devices: list | None = None):
    if mode not in MODES:
      raise ValueError(f'config.parallel: expected one of {MODES}, got {mode!r}')
    self.mode = mode
    devices = jax.devices() if devices is None else list(devices)
    if mode == 'none':
      devices = devices[:1]
    self.devices = devices
    self.local_devices = [d for d in devices if d.process_index == jax.process_index()]
    self.mesh = Mesh(np.asarray(devices), (BATCH_AXIS,))
    # pmap's inputs: a leading axis split over this host's devices.
    self._local_axis = NamedSharding(Mesh(np.asarray(self.local_devices), (BATCH_AXIS,)),
                                     PartitionSpec(BATCH_AXIS))

  @property
  def axis_name(self) -> str | None:
    """The name collectives use inside step bodies; None on one device."""
    return None if self.mode == 'none' else BATCH_AXIS

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def host_batch_size(self, global_batch_size: int) -> int:
    """Examples this host loads per step; checks the global batch splits evenly."""
    if global_batch_size % self.num_devices:
      raise ValueError(f'config.batch_size: {global_batch_size} does not split over '
                       f'{self.num_devices} devices')
    return global_batch_size * len(self.local_devices) // self.num_devices

  def replicate(self, tree: Any) -> Any:
    """Host PyTree -> the same values on every device, in this mode's layout."""
    if self.mode == 'pmap':
      # pmap's layout: a leading axis of local devices, one copy on each.
      n = len(self.local_devices)
      return jax.tree_util.tree_map(
          lambda x: jax.device_put(np.stack([np.asarray(x)] * n), self._local_axis), tree)
    sharding = NamedSharding(self.mesh, PartitionSpec())
    return jax.device_put(tree, sharding)

  def unreplicate(self, tree: Any) -> Any:
    """Replicated device PyTree -> numpy PyTree (one copy)."""
    if self.mode == 'pmap':  # the copy on the first local device: [1, ...] -> [...]
      return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0))[0], tree)
    # A fully replicated global array: every host holds whole copies.
    return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0)), tree)

  def shard_batch(self, batch: Any) -> Any:
    """This host's batch (numpy, leading axis = host batch) -> device arrays split over devices."""
    if self.mode == 'pmap':
      n = len(self.local_devices)

      def split(x):
        x = np.asarray(x)
        return jax.device_put(x.reshape(n, x.shape[0] // n, *x.shape[1:]), self._local_axis)
      return jax.tree_util.tree_map(split, batch)
    if self.mode == 'shard_map':
      sharding = NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))
      return jax.tree_util.tree_map(
          lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
    return jax.device_put(batch, self.devices[0])

  def compile(self, body: Callable, num_batch_args: int = 1,
              num_replicated_args: int = 0, donate_state: bool = True) -> Callable:
    """Wraps body(state, *batches, *replicated) -> (state, metrics) for this mode.

    `state` and the trailing `replicated` arguments are the same on every
    device; the `batches` are split over devices along their leading axis.
    Outputs must be replicated (reduced with pmean/psum inside the body).
    """
    donate = (0,) if donate_state else ()
    if self.mode == 'pmap':
      return jax.pmap(body, axis_name=BATCH_AXIS, donate_argnums=donate)
    if self.mode == 'shard_map':
      in_specs = ((PartitionSpec(),) + (PartitionSpec(BATCH_AXIS),) * num_batch_args +
                  (PartitionSpec(),) * num_replicated_args)
      mapped = jax.shard_map(body, mesh=self.mesh, in_specs=in_specs,
                             out_specs=PartitionSpec())
      return jax.jit(mapped, donate_argnums=donate)
    return jax.jit(body, donate_argnums=donate)


def prefetch_to_device(batches: Iterator, data: DataParallel, size: int = 2) -> Iterator:
  """Host batches -> device batches (`data.shard_batch`), `size` placed ahead of use.

  As the flax examples' `prefetch_to_device` and big_vision's prefetch do:
  a batch's (asynchronous) copy to the devices is started `size` - 1 steps
  before the step that takes it, so the step does not wait for the copy,
  and reading the next host batch overlaps the steps already dispatched.
  Under shard_map every process places its share of the global batch.

  Args:
    batches: host batches (numpy PyTrees with a leading host-batch axis).
    data: the placement, pmap's, shard_map's or one device's.
    size: batches placed on the devices at once, the one in use included; >= 1.

  Returns:
    An iterator of the batches in order, on the devices; it reads the
    first `size` when first asked for one.
  """
  if size < 1:
    raise ValueError(f'prefetch size: expected >= 1, got {size}')
  batches, queue = iter(batches), collections.deque()

  def place(count):
    for batch in itertools.islice(batches, count):
      queue.append(data.shard_batch(batch))

  def in_order():
    place(size)
    while queue:
      yield queue.popleft()
      place(1)
  return in_order()
