"""`iqt view`: a browser page for readers without Slicer. Slicer's own slice views, served by trame-slicer: cubic
interpolation | IQT side by side (linked), the uncertainty overlay with its legend, an opacity slider and "Above clean
level or median only", a method picker that runs the engine in the background with a progress bar, and colour-FA /
FA display of the tensors.

The engine runs in a worker thread on numpy Volumes; MRML nodes are only touched on the server's event loop.
`iqt view` refuses bad input before serving (apps/cli/view.py); a Viewer given a path reads it itself, and then shows
bad input (not a tensor volume, a mask on another grid) as one line in the page.

viewer.py holds the page and its state (Viewer), page.py what it is made of, engine.py the method it runs first and
its FA, stopping.py how the command stops (its run's thread, the signals while it builds and serves: STOP_SAY_S and co. are
read there).
"""

from __future__ import annotations

from .engine import fa_volume, first_method
from .page import (CONVENTION, DISPLAYS, LEFT, OPACITY, POLL_S, RIGHT, SLIDER_PX, STOPPED, TOOLBAR_CSS, TOOLBAR_ROWS_PX,
                   TOOLBAR_THREE_ROWS_PX, check_port, import_trame)
from .stopping import signals_held
from .viewer import Viewer

__all__ = ["CONVENTION", "DISPLAYS", "LEFT", "OPACITY", "POLL_S", "RIGHT", "SLIDER_PX", "STOPPED", "TOOLBAR_CSS",
           "TOOLBAR_ROWS_PX", "TOOLBAR_THREE_ROWS_PX", "Viewer", "check_port", "fa_volume", "first_method", "import_trame",
           "signals_held"]
