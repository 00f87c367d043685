"""``python -m neuro_api.server`` (see ``--help``): the composition root's CLI.

A thin entry point: the process lives in :mod:`neuro_api.app`, above this
package.
"""

from neuro_api.app import main

raise SystemExit(main())
