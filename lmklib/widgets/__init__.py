"""Interactive notebook widgets. Each module keeps its logic in plain functions that return data
(crops, predictions, figure state), so they are tested without a browser; ipywidgets is imported
only when a widget is built."""

import os

#: Set by ``lmk reproduce`` while it executes a notebook: no front end is there to interact with.
HEADLESS_ENV = "LMK_HEADLESS"


def headless() -> bool:
    """True inside a headless run (``lmk reproduce``/papermill). Live ipywidgets are skipped
    there: nobody can move a slider, and nbclient can block forever on a cell that opens widget
    comms (jupyter/nbclient#312, seen here once in a CI-like run of 01_ccnn). The notebook keeps
    the widget's static figure."""
    return os.environ.get(HEADLESS_ENV) == "1"
