"""Test set-up: eight virtual CPU devices, so data-parallel code runs for real.

The flag must be set before JAX initialises its backend, hence here. Code on
one device still uses only the first of them.
"""

import os

_FLAG = '--xla_force_host_platform_device_count=8'
if _FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG).strip()
