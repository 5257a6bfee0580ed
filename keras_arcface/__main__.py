"""``python -m keras_arcface`` runs the command line."""

import sys

from keras_arcface.cli import main

sys.exit(main())
