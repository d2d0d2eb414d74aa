"""``python -m kdspectra``: the same command-line interface as the ``kdspectra`` script."""

from kdspectra.cli import main

raise SystemExit(main())
