"""``python -m cityseg.cli``: the same as the ``cityseg`` command (launchers such as torchrun need a module)."""

import sys

from cityseg.cli import main

sys.exit(main())
