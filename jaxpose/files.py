"""Writing a command's products whole or not at all: a temporary name beside the target, renamed over it.

A crash, a kill, a full disk or a value that cannot be written leaves any
earlier file at the target as it was and no partial file behind: the
temporary file sits in the target's folder (so the rename stays on one
filesystem, where it is atomic) and is removed on any failure.
"""

from collections.abc import Iterator
import contextlib
import json
import os
import pathlib
import tempfile
from typing import Any


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside `path`; renames it to `path` when the block ends without error.

  The caller writes the temporary file by any means (a library's own `save`
  included). Its permissions become 0644, as a plainly created file's.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # The target's suffix last: writers that pick a format by it (cv2) see it.
  descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.',
                                      suffix=f'.tmp{path.suffix}')
  os.close(descriptor)
  temporary = pathlib.Path(name)
  try:
    yield temporary
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the file from other readers
    os.replace(temporary, path)
  except OSError as e:
    if e.filename is not None:
      raise
    # A write's OSError (a full disk, a file too large) names no file: name the target.
    raise OSError(e.errno, f'{path}: not written ({e.strerror}); any earlier file there is '
                  'unchanged') from None
  finally:
    temporary.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, value: Any, **dump_options) -> pathlib.Path:
  """Writes `value` as JSON to `path` atomically (`replacing`), synced to disk; -> the path."""
  with replacing(path) as temporary:
    with open(temporary, 'w') as f:
      json.dump(value, f, **dump_options)
      f.flush()
      os.fsync(f.fileno())
  return pathlib.Path(path)


def check_writable(path: str | os.PathLike, flag: str, *, folder: bool = False) -> None:
  """Raises OSError naming `flag` and `path` unless a file (or, with `folder`, a folder of files) can be written there.

  Checked before any work, by creating and removing a temporary file in the
  nearest folder that exists on the way to `path` (nothing is left behind,
  no folder created): a path under a file, a read-only filesystem or a
  folder without write permission fail here, in one line, not after an hour
  of computation.
  """
  path = pathlib.Path(path)
  what = 'a folder it can create or write in' if folder else 'a file in a writable folder'
  if not folder and path.is_dir():
    raise IsADirectoryError(f'{flag} {path}: is a folder; expected {what}')
  if folder and path.exists() and not path.is_dir():
    raise NotADirectoryError(f'{flag} {path}: is a file; expected {what}')
  existing = path if folder and path.is_dir() else path.parent
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    raise NotADirectoryError(f'{flag} {path}: {existing} is a file, not a folder; expected {what}')
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    raise PermissionError(f'{flag} {path}: cannot write in {existing} ({e.strerror}); '
                          f'expected {what}') from None
