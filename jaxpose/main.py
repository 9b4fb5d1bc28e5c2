"""`jaxpose train`, `sweep` and `eval`: absl flags and ml_collections config files.

  jaxpose train --config configs/quickstart.py --workdir workdirs/quickstart \
      --config.model.num_stacks=4
  jaxpose sweep --config configs/sweeps/quickstart_stacks.py --workdir workdirs/sweep
  jaxpose eval --config configs/hourglass_coco.py --workdir workdirs/hg_coco \
      --config.data.coco_dir=/data/coco [--detections=dets.json]

Every config field can be overridden with --config.FIELD=VALUE. On several
hosts (a TPU pod slice) each host runs the same command and
`jax.distributed.initialize()` connects them; where JAX cannot detect the
cluster, add --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jaxpose import sweep as sweep_lib
from jaxpose import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and the config.')
flags.DEFINE_bool('print_only', False,
                  'sweep: print one `jaxpose train` command per point instead of running them.')
flags.DEFINE_bool('distributed', None,
                  'Call jax.distributed.initialize() (default: when the environment '
                  'names a coordinator, as on Cloud TPU pods and SLURM, or when '
                  '--coordinator_address is given).')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0, for clusters JAX does not detect by itself '
                    '(with --num_processes and --process_id).')
flags.DEFINE_integer('num_processes', None, 'Processes (hosts) in the run.')
flags.DEFINE_integer('process_id', None, 'This process\'s index, 0 to num_processes - 1.')
config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_integer('step', None, 'eval: checkpoint step (default: the latest).')
flags.DEFINE_string('detections', None,
                    'eval: COCO detection results JSON for the person boxes (top-down COCO); '
                    'default: the ground-truth boxes.')
flags.DEFINE_float('detection_threshold', 0.0, 'eval: drop detections scored lower.')
flags.DEFINE_bool('flip_test', True, 'eval: average with the mirrored crops (top-down).')
flags.DEFINE_list('scales', ['1'], 'eval: bottom-up input scales whose maps are averaged '
                  "(upstream val.py's --multiscale: 0.5,1,1.5,2).")
flags.DEFINE_string('results', None,
                    'eval: COCO results JSON to write (default: WORKDIR/eval/results_stepN.json).')

_COORDINATOR_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'COORDINATOR_ADDRESS', 'TPU_WORKER_HOSTNAMES',
                          'SLURM_JOB_ID', 'MEGASCALE_COORDINATOR_ADDRESS')


def _initialize_distributed() -> None:
  wanted = FLAGS.distributed
  if wanted is None:
    wanted = (FLAGS.coordinator_address is not None or
              any(os.environ.get(v) for v in _COORDINATOR_VARIABLES))
  if wanted:
    # Unset flags are None: JAX detects them from the cluster's environment.
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  logging.info('JAX process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def train_main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.config is None or FLAGS.workdir is None:
    raise app.UsageError('--config and --workdir are required')
  if not FLAGS['verbosity'].present:  # Orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  _initialize_distributed()
  try:
    metrics = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    sys.exit(f'jaxpose train: {e}')
  print('final:', ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                           for k, v in metrics.items()))


def sweep_main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  sweep_file = config_flags.get_config_filename(FLAGS['config'])
  if not sweep_file or FLAGS.workdir is None:
    raise app.UsageError('--config (a sweep file) and --workdir are required')
  try:
    sweep_lib.run(sweep_file, FLAGS.workdir,
                  print_only=FLAGS.print_only)
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    sys.exit(f'jaxpose sweep: {e}')


def eval_main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.config is None or FLAGS.workdir is None:
    raise app.UsageError('--config and --workdir are required')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  from jaxpose import eval_model  # pylint: disable=g-import-not-at-top
  try:
    scales = [float(scale) for scale in FLAGS.scales]
  except ValueError:
    raise app.UsageError(f'--scales: expected numbers, got {",".join(FLAGS.scales)}') from None
  if not scales or min(scales) <= 0:
    raise app.UsageError(f'--scales: expected positive numbers, got {",".join(FLAGS.scales)}')
  try:
    eval_model.run(FLAGS.config, FLAGS.workdir, step=FLAGS.step, detections=FLAGS.detections,
                   detection_threshold=FLAGS.detection_threshold, flip_test=FLAGS.flip_test,
                   scales=scales, results_file=FLAGS.results)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'jaxpose eval: {e}')


def run(command: str, argv: list[str]) -> None:
  """Runs `jaxpose <command> argv...` as an absl app."""
  main = {'train': train_main, 'sweep': sweep_main, 'eval': eval_main}[command]
  try:
    app.run(main, argv=[f'jaxpose {command}'] + argv)
  except (AttributeError, KeyError) as e:
    # config_flags applies --config.X=... while parsing flags, before main
    # runs; a misspelt field surfaces here as a KeyError from ConfigDict.
    overrides = [a for a in argv if a.startswith('--config.')]
    text = str(e).replace('\\n', '\n')
    hint = next((line.strip(' \'"') for line in text.splitlines() if 'Did you mean' in line), '')
    sys.exit(f'jaxpose {command}: unknown config field in {" ".join(overrides)}. {hint}'.strip())
