"""Run the command-line interface with ``python -m authproxy``."""

from authproxy.cli.main import main

raise SystemExit(main())
