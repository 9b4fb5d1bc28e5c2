"""Progressive resizing: the first training steps on smaller inputs, the rest at config.input_size.

`config.input_size_schedule = ((until_step, (width, height)), ...)`: steps
1..until_step of the first entry train at its size, then each next entry's
size up to its step, and the steps after the last entry at
`config.input_size`, which evaluation always uses. A step's cost grows with
its pixels, so the network learns its features where they are cheap and
its precise localisation at the full size (fast.ai's progressive resizing;
EfficientNetV2's progressive learning grows the input the same way).

Each phase trains with a copy of the config whose input_size is the phase's
and whose sigma is scaled by the phase's width over config.input_size's:
the Gaussian targets then cover the same part of a person at every size.
The data position is the step (`loader.GlobalBatchSampler`), so a phase's
loader starts at the phase's first step, and a run resumed in any phase
reads what an uninterrupted run reads.
"""

import ml_collections

FIELD = 'config.input_size_schedule'


def check(config: ml_collections.ConfigDict, approach) -> None:
  """Raises ValueError naming the entry of config.input_size_schedule that is not usable."""
  previous = 0
  for index, entry in enumerate(config.input_size_schedule):
    try:
      until_step, size = entry
      until_step = int(until_step)
      size = tuple(size)
    except (TypeError, ValueError) as e:
      raise ValueError(f'{FIELD}[{index}]: expected (until_step, (width, height)), '
                       f'got {entry!r}') from e
    if not previous < until_step < config.num_train_steps:
      raise ValueError(f'{FIELD}[{index}]: until_step must increase and stay below '
                       f'config.num_train_steps ({config.num_train_steps}), got {until_step} '
                       f'after {previous}')
    approach.check_input_size(size, f'{FIELD}[{index}]')
    previous = until_step


def phase_end(config: ml_collections.ConfigDict, step: int) -> int:
  """The last step of the phase that trains `step` (1-based): its until_step, or num_train_steps."""
  for until_step, _ in config.input_size_schedule:
    if step <= until_step:
      return int(until_step)
  return int(config.num_train_steps)


def phase_config(config: ml_collections.ConfigDict, step: int) -> ml_collections.ConfigDict:
  """The config that trains `step` (1-based): config itself in the last phase, else a copy at the phase's size."""
  for until_step, size in config.input_size_schedule:
    if step <= until_step:
      phase = config.copy_and_resolve_references()
      phase.input_size = tuple(int(s) for s in size)
      phase.sigma = config.sigma * phase.input_size[0] / config.input_size[0]
      return phase
  return config
