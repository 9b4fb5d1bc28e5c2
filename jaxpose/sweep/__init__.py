"""Sweeps: a base config and a list of overrides, trained into one table (`runner`), side by side (`scheduler`)."""

from jaxpose.sweep.runner import (apply_overrides, expand, load_config_file, plan, point_name,
                                  product, run, sweep, train_run, with_seeds, zip_, zipped, finished)

__all__ = ['apply_overrides', 'expand', 'load_config_file', 'plan', 'point_name', 'product',
           'run', 'sweep', 'train_run', 'with_seeds', 'zip_', 'zipped', 'finished']
