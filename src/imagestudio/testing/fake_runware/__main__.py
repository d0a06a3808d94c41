"""``python -m imagestudio.testing.fake_runware``: run a fake Runware until interrupted."""

import sys

from imagestudio.testing.fake_runware.cli import main

main(sys.argv[1:])
