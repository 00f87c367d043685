"""``python -m neuro_api.server`` (see ``--help``)."""

from neuro_api.server._cli import main

raise SystemExit(main())
