"""``python -m naflow_aug.cli`` (and torchrun ``-m naflow_aug.cli``) runs the `naflow-aug` command."""

import sys

from naflow_aug.cli import main

sys.exit(main())
