"""``python -m imagestudio.cli`` is the ``imagestudio`` command (as is ``python -m imagestudio``)."""

import sys

from imagestudio.cli import main

sys.exit(main())
