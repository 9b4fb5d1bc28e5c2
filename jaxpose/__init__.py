"""jaxpose: 2D human pose estimation in JAX and Flax (stacked hourglass, OpenPose, STAF).

The package is layered (docs/architecture.md): core leaves (skeletons,
losses, files, config, codecs, models), then data and metrics, approaches,
then training, tracking, inference and deploy, and the `jaxpose` command.

Modules that moved in the second architecture step (release 0.3) keep their
old import paths for one release: importing one of `MOVED` gives the module
at its new path, with a DeprecationWarning naming it.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# Old module path -> new module path (the note of issue 26 lists them too).
MOVED = {
    'jaxpose.train': 'jaxpose.training.trainer',
    'jaxpose.parallel': 'jaxpose.training.parallel',
    'jaxpose.checkpoint': 'jaxpose.training.checkpoint',
    'jaxpose.preemption': 'jaxpose.training.preemption',
    'jaxpose.progressive': 'jaxpose.training.progressive',
    'jaxpose.mfu': 'jaxpose.training.mfu',
    'jaxpose.metric_writers': 'jaxpose.training.metric_writers',
    'jaxpose.sweep_processes': 'jaxpose.sweep.scheduler',
    'jaxpose.sweep_report': 'jaxpose.sweep.report',
    'jaxpose.inference.tracking': 'jaxpose.tracking.tracker',
    'jaxpose.inference.taf_tracking': 'jaxpose.tracking.taf_tracker',
    'jaxpose.inference.smoothing': 'jaxpose.tracking.smoothing',
    'jaxpose.infer': 'jaxpose.inference.pipeline',
    'jaxpose.inference.video': 'jaxpose.inference.frame_sources',
    'jaxpose.visualize': 'jaxpose.inference.drawing',
    'jaxpose.export': 'jaxpose.deploy.export',
    'jaxpose.predictor': 'jaxpose.deploy.predictor',
    'jaxpose.convert': 'jaxpose.deploy.convert',
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Finds an old module path of `MOVED` and loads it as the module at its new path."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    if fullname not in MOVED:
      return None
    return importlib.util.spec_from_loader(fullname, self)

  def create_module(self, spec):
    new = MOVED[spec.name]
    warnings.warn(f'{spec.name} moved to {new}; the old path goes in the next release',
                  DeprecationWarning, stacklevel=3)
    return importlib.import_module(new)

  def exec_module(self, module):
    del module  # already executed under its new name


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
  sys.meta_path.append(_MovedModuleFinder())
