"""``python -m craft_callbacks.cli``: the ``craft-callbacks`` command."""

import sys

from craft_callbacks.cli.commands import main

sys.exit(main())
