"""Set-up of a grain worker process: keep freed memory for the next record.

A worker decodes an image (about 1 MB for COCO, 3 MB for MPII), crops it and
frees it, hundreds of times a second. glibc's malloc hands such blocks back to
the kernel soon after they are freed (memory above its trim threshold, about
twice the largest block freed so far), so the next image faults its pages in
again: on the 2-core VM of BENCHMARKS.md that was 55 page faults and 0.1-0.4
ms of kernel time per record, a fifth of a record's decoding. Fixing malloc's
thresholds keeps the memory in the process and the faults at zero.

The thresholds bound what a worker keeps: blocks under `MMAP_THRESHOLD`
come from the heap and up to `TRIM_THRESHOLD` of freed heap stays mapped, so
a worker holds at most its peak use plus 64 MiB. The training process is left
as it is: it owns the device buffers, and its allocations are not ours to
retune.
"""

import ctypes
import ctypes.util
import multiprocessing

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap: a 4K RGB frame (24 MiB) does. glibc's
# own dynamic threshold never goes above 32 MiB either.
MMAP_THRESHOLD = 32 << 20
# Freed memory at the heap's top stays mapped up to this much.
TRIM_THRESHOLD = 64 << 20

_configured = False


def keep_freed_memory() -> bool:
  """Sets this process's malloc thresholds (module docstring); False where there is no glibc.

  Idempotent. Setting a threshold turns off glibc's dynamic adjustment, which
  is what let the heap shrink and regrow around each image.
  """
  global _configured
  if _configured:
    return True
  name = ctypes.util.find_library('c')
  if name is None:
    return False
  try:
    mallopt = ctypes.CDLL(name).mallopt
  except (OSError, AttributeError):  # not glibc (musl, macOS): leave it
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  # mallopt returns 1 on success.
  _configured = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and
                     mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
  return _configured


def configured() -> bool:
  """Whether `keep_freed_memory` has set this process's thresholds."""
  return _configured


def prepare_if_worker() -> None:
  """Runs `keep_freed_memory` when this is a child process (a grain worker), else nothing."""
  if multiprocessing.parent_process() is not None:
    keep_freed_memory()
