"""`jaxpose train --config configs/X.py --workdir DIR [--config.FIELD=VALUE ...]`: train and evaluate.

Rerunning the same command resumes from the workdir's latest checkpoint.
The last line of stdout is the final metrics as JSON.

On several hosts (a TPU pod slice) each host runs the same command and
`jax.distributed.initialize()` connects them; where JAX cannot detect the
cluster, add --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

import os

from absl import flags
from absl import logging
import jax

from jaxpose.training import trainer

_COORDINATOR_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'COORDINATOR_ADDRESS', 'TPU_WORKER_HOSTNAMES',
                          'SLURM_JOB_ID', 'MEGASCALE_COORDINATOR_ADDRESS')


CONFIG_DRIVEN = True
OUTPUT_FLAGS = {'workdir': 'folder'}


def define_flags(flag_values: flags.FlagValues) -> None:
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


def initialize_distributed(flag_values: flags.FlagValues) -> None:
  """jax.distributed.initialize() when asked to or when the environment names a coordinator."""
  wanted = flag_values.distributed
  if wanted is None:
    wanted = (flag_values.coordinator_address is not None or
              any(os.environ.get(v) for v in _COORDINATOR_VARIABLES))
  if wanted:
    # Unset flags are None: JAX detects them from the cluster's environment.
    jax.distributed.initialize(coordinator_address=flag_values.coordinator_address,
                               num_processes=flag_values.num_processes,
                               process_id=flag_values.process_id)
  logging.info('JAX process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def main(flag_values: flags.FlagValues) -> dict:
  initialize_distributed(flag_values)
  return trainer.train_and_evaluate(flag_values.config, flag_values.workdir)
