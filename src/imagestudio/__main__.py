"""``python -m imagestudio`` is the ``imagestudio`` command."""

import sys

from imagestudio.cli import main

sys.exit(main())
