"""Run the command-line interface with ``python -m authproxy``."""

from authproxy.cli import main

raise SystemExit(main())
