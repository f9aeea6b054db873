"""``python -m morphomass``: the command line (:func:`morphomass.cli.main`)."""

from morphomass.cli import main

raise SystemExit(main())
