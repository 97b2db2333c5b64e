"""python -m search: the same as the hypercnn command."""

import sys

from search.cli import main

sys.exit(main())
