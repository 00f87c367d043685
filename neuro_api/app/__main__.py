"""``python -m neuro_api.app``: the same as ``python -m neuro_api.server``."""

from neuro_api.app import main

raise SystemExit(main())
