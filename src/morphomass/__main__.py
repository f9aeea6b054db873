"""``python -m morphomass``: the command line (:func:`morphomass.cli.main`)."""

from morphomass.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
