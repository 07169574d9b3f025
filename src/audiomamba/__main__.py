"""``python -m audiomamba`` (also what ``torchrun -m audiomamba`` runs)."""

import sys

from audiomamba.cli import main

sys.exit(main())
