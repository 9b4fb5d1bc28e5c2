"""The `jaxpose` subcommands: one module each, with `define_flags(flag_values)` and `main(flag_values)`.

`jaxpose.cli` parses each command's own absl flags (a `flags.FlagValues` per
command, so a command accepts only its flags) and calls its `main`, which
turns them into typed arguments of the library and returns what the command
prints as JSON on the last line of stdout (a dict), or None. A command
module may also set:
- `CONFIG_DRIVEN = True`: it gets --config (an ml_collections config file,
  with --config.FIELD=VALUE overrides) and --workdir, as the flax examples;
- `OUTPUT_FLAGS = {flag: 'file' | 'folder'}`: the flags naming what it
  writes, checked writable before any work (a usage error otherwise).
"""

from collections.abc import Callable
import os
import sys

from absl import flags
import ml_collections
from ml_collections import config_flags

from jaxpose import files
from jaxpose.approaches import protocols, records
from jaxpose.training import hosts, preemption

# Where these are set, the environment names a coordinator (Cloud TPU pods, SLURM).
_COORDINATOR_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'COORDINATOR_ADDRESS', 'TPU_WORKER_HOSTNAMES',
                          'SLURM_JOB_ID', 'MEGASCALE_COORDINATOR_ADDRESS')


class UsageError(ValueError):
  """A mistake in how a command was called (exit status 2): a flag's value, an output that cannot be written."""


def define_config_flags(flag_values: flags.FlagValues, argv: list[str]) -> None:
  """--config and --workdir; `argv` (the command line) names the --config.FIELD overrides."""
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                  flag_values=flag_values, lock_config=True, sys_argv=argv)
  flags.DEFINE_string('workdir', None, "The run's folder: checkpoints, metrics and its config.",
                      flag_values=flag_values)
  flags.mark_flags_as_required(['config', 'workdir'], flag_values=flag_values)


def check_writable(path: str, flag: str, *, folder: bool = False) -> None:
  """UsageError naming `flag` unless `path` (a file, or with `folder` a folder) can be written."""
  try:
    files.check_writable(path, flag, folder=folder)
  except OSError as e:
    raise UsageError(str(e)) from None


def parse_size(values: list[str] | None, flag: str) -> tuple[int, int] | None:
  """--FLAG=W,H -> (width, height); UsageError naming the flag otherwise."""
  if values is None:
    return None
  try:
    width, height = (int(v) for v in values)
  except ValueError:
    raise UsageError(f'--{flag}: expected WIDTH,HEIGHT, got {",".join(values)}') from None
  return width, height


def define_protocol_flag(flag_values: flags.FlagValues) -> None:
  """--protocol NAME, its help listing every protocol of `approaches.protocols`."""
  names = ', '.join(protocols.PROTOCOLS)
  flags.DEFINE_string('protocol', None,
                      f'How the maps become people, as a published result was made: {names} '
                      "(docs/evaluation.md says what each reproduces); default: the model's own, "
                      'from its arch.', flag_values=flag_values)


def protocol_name(value: str | None, command: str, old_flag: str = 'protocol') -> str | None:
  """--protocol's (or a deprecated per-case flag's) value -> a protocol name, or None for the model's default.

  The values of the flags before protocols had names ('jaxpose', 'bearpaw',
  'mmpose') still work for one release, with a warning on stderr naming the
  new form.
  """
  if value is None:
    return None
  if value in records.OLD_PROTOCOL_NAMES:
    new = records.OLD_PROTOCOL_NAMES[value]
    print(f'jaxpose {command}: --{old_flag}={value} is deprecated: use '
          f'--protocol={new or "NAME"}' + ('' if new else " (or leave it out: the model's own)"),
          file=sys.stderr)
    return new
  if value not in protocols.PROTOCOLS:
    raise UsageError(f'--{old_flag}: expected one of {", ".join(protocols.PROTOCOLS)}, '
                     f'got {value!r}')
  return value


def define_distributed_flags(flag_values: flags.FlagValues) -> None:
  """--distributed, --coordinator_address, --num_processes, --process_id: one run over several processes."""
  flags.DEFINE_bool('distributed', None,
                    'Call jax.distributed.initialize() (default: when the environment '
                    'names a coordinator, as on Cloud TPU pods and SLURM, or when '
                    '--coordinator_address is given).', flag_values=flag_values)
  flags.DEFINE_string('coordinator_address', None,
                      'host:port of process 0, for clusters JAX does not detect by itself '
                      '(with --num_processes and --process_id).', flag_values=flag_values)
  flags.DEFINE_integer('num_processes', None, 'Processes (hosts) in the run.',
                       flag_values=flag_values)
  flags.DEFINE_integer('process_id', None, "This process's index, 0 to num_processes - 1.",
                       flag_values=flag_values)


def initialize_distributed(flag_values: flags.FlagValues,
                           timeouts: ml_collections.ConfigDict) -> None:
  """jax.distributed with `timeouts` (config.distributed) when asked to or when the environment names a coordinator."""
  wanted = flag_values.distributed
  if wanted is None:
    wanted = (flag_values.coordinator_address is not None or
              any(os.environ.get(v) for v in _COORDINATOR_VARIABLES))
  if wanted:
    # Unset flags are None: JAX detects them from the cluster's environment.
    hosts.initialize(timeouts, coordinator_address=flag_values.coordinator_address,
                     num_processes=flag_values.num_processes, process_id=flag_values.process_id)


def run_on_hosts(work: Callable[[], dict], timeouts: ml_collections.ConfigDict) -> dict:
  """A command's work on this process of a run: its result, then every process leaves together.

  A failure that may be a lost process (a collective with a dead peer fails
  at once on the CPU) waits for `hosts` to name it before it is raised.
  """
  try:
    result = work()
  except preemption.Preempted:
    hosts.finish(timeouts)
    raise
  except Exception:
    hosts.wait_for_lost_process(timeouts)
    raise
  hosts.finish(timeouts)
  return result
