"""Test set-up: eight virtual CPU devices, and one folder and XLA compilation cache per test run.

Set in the environment before JAX initialises, hence here; pytest-xdist's
workers and the tests' own subprocesses inherit it from pytest's main
process, which makes the folders and removes them at the end.

- Eight virtual CPU devices, so that data-parallel code runs for real. Code
  on one device still uses only the first of them.
- RUN_DIR_VARIABLE names a folder of this run that every worker sees: what
  several test files share is built once there (`inference_models`).
- A persistent compilation cache shared by every process of this run (JAX
  keys it by the computation, so the same step or model built by two test
  files, or by two workers, compiles once). It starts empty: every run
  compiles what it runs, as CI does, and no result depends on an earlier
  run. A JAX_COMPILATION_CACHE_DIR of your own is used as it is.
"""

import os
import shutil
import tempfile

_FLAG = '--xla_force_host_platform_device_count=8'
if _FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG).strip()

RUN_DIR_VARIABLE = 'JAXPOSE_TEST_RUN_DIR'
_CACHE_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'
_MIN_COMPILE_TIME_VARIABLE = 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'
# Set only in the process that made the run's folder (pytest's main process).
_OWN_RUN_DIR = None
if not os.environ.get(RUN_DIR_VARIABLE):
  _OWN_RUN_DIR = tempfile.mkdtemp(prefix='jaxpose-tests-')
  os.environ[RUN_DIR_VARIABLE] = _OWN_RUN_DIR
  if not os.environ.get(_CACHE_VARIABLE):
    os.environ[_CACHE_VARIABLE] = os.path.join(_OWN_RUN_DIR, 'xla_cache')
    # JAX caches only what took a second to compile; the tests' tiny models
    # compile many programs of a tenth of that, again in each file and
    # subprocess (measured: a second run of two test_train tests, 28 s
    # cached at 1 s, 23 s at 0.05 s).
    os.environ.setdefault(_MIN_COMPILE_TIME_VARIABLE, '0.05')


# The longest files, handed to the workers first: pytest-xdist's loadfile
# deals files out in collection order, and a long file dealt last would
# leave the other worker idle at the end.
_LONGEST_FILES = ('test_cli.py', 'test_train.py', 'test_evaluation.py', 'test_recorded_outputs.py',
                  'test_hourglass.py', 'test_published_checkpoints.py', 'test_infer.py')


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: index for index, name in enumerate(_LONGEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within


def pytest_unconfigure(config):
  del config
  if _OWN_RUN_DIR is not None:
    shutil.rmtree(_OWN_RUN_DIR, ignore_errors=True)
