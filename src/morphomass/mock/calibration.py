"""Shim: ``python -m morphomass.mock.calibration`` runs :mod:`morphomass.calibration`.

The calibration tool uses three stages (the mock, the catalogue stage and the evaluate stage's baselines),
so it lives in the top layer as ``morphomass.calibration``; a stage package such as ``mock`` may import no
other stage. This module keeps the older command working and imports nothing when it is imported: the tool
is loaded only when the module runs as a script.
"""

if __name__ == "__main__":
    import runpy

    runpy.run_module("morphomass.calibration", run_name="__main__", alter_sys=True)
