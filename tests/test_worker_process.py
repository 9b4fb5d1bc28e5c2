"""Grain worker set-up: malloc keeps freed images, in workers only."""

import multiprocessing
import pickle
import platform
import subprocess
import sys
import textwrap

from jaxpose.data import augment, worker_process

# Allocates and frees two 1 MiB blocks 200 times, as a worker does with an
# image and its crop, and prints the page faults per round. glibc's dynamic
# thresholds trim the heap each round (its trim threshold is twice the largest
# block freed so far), so the next round faults the pages in again.
_FAULTS_PER_ROUND = textwrap.dedent('''
    import resource, sys
    import numpy as np
    from jaxpose.data import worker_process
    configured = worker_process.keep_freed_memory() if sys.argv[1] == 'keep' else False
    def rounds(count):
      for _ in range(count):
        image = np.ones(1 << 20, np.uint8)
        crop = np.ones(1 << 20, np.uint8)
        del image, crop
    rounds(5)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    rounds(200)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(configured, (after - before) / 200)
''')


def _faults_per_round(mode: str) -> tuple[bool, float]:
  output = subprocess.run([sys.executable, '-c', _FAULTS_PER_ROUND, mode], check=True,
                          capture_output=True, text=True).stdout.split()
  return output[0] == 'True', float(output[1])


def test_kept_memory_is_not_faulted_in_again():
  assert platform.libc_ver()[0] == 'glibc'  # the machines this project runs on
  configured, kept = _faults_per_round('keep')
  unconfigured, default = _faults_per_round('default')
  assert configured and not unconfigured
  # 2 MiB is 512 pages: glibc's defaults fault most of them every round.
  assert default > 256, default
  assert kept < 1, kept


def test_a_transform_configures_the_child_process_it_is_unpickled_in():
  transform = augment.TopDownTransform((64, 64))
  with multiprocessing.get_context('spawn').Pool(1) as pool:
    assert not pool.apply(worker_process.configured)
    # The pool pickles the transform to the child, which unpickles it as a
    # grain worker unpickles its dataset.
    pool.apply(pickle.loads, (pickle.dumps(augment.BottomUpTransform(64)),))
    assert pool.apply(worker_process.configured)
  with multiprocessing.get_context('spawn').Pool(1) as pool:
    pool.apply(pickle.loads, (pickle.dumps(transform),))
    assert pool.apply(worker_process.configured)
  # This process (the trainer's) keeps glibc's defaults.
  assert pickle.loads(pickle.dumps(transform)).input_size == (64, 64)
  assert not worker_process.configured()
