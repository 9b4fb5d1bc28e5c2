"""`jaxpose train --config configs/X.py --workdir DIR [--config.FIELD=VALUE ...]`: train and evaluate.

Rerunning the same command resumes from the workdir's latest checkpoint.
The last line of stdout is the final metrics as JSON.

On several hosts (a TPU pod slice) each host runs the same command and
`jax.distributed.initialize()` connects them; where JAX cannot detect the
cluster, add --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
A SIGTERM on any host makes every host save the same step and exit 0; a
lost host makes the others exit 1 naming it (docs/pod.md).
"""

from absl import flags

from jaxpose import commands
from jaxpose import config as config_lib
from jaxpose.training import trainer

CONFIG_DRIVEN = True
OUTPUT_FLAGS = {'workdir': 'folder'}


def define_flags(flag_values: flags.FlagValues) -> None:
  commands.define_distributed_flags(flag_values)


def main(flag_values: flags.FlagValues) -> dict:
  config = flag_values.config
  timeouts = config_lib.distributed_timeouts(config)
  commands.initialize_distributed(flag_values, timeouts)
  return commands.run_on_hosts(lambda: trainer.train_and_evaluate(config, flag_values.workdir),
                               timeouts)
