"""What the `iqt view` page is made of: its two views, displays, toolbar layout and stopped page, and the trame-slicer
modules it needs."""

from __future__ import annotations

from ...core.errors import IQTError, install_extra
from ...slicer import display


LEFT, RIGHT = display.COMPARE_VIEWS


DISPLAYS = (("colour FA", "tensor"), ("FA", "fa"))  # colour FA: the DTI nodes as Slicer draws them


OPACITY = 0.5


CONVENTION = "radiological: patient right on screen left"  # Slicer's axial and coronal views, the only ones shown


POLL_S = 0.2


# a run's picture sent before its "done" (Viewer._send_frames): JPEG (trame-slicer's encoder, TurboJPEG) at trame-rca's
# quality for a still frame
STILL_QUALITY = 90


SLIDER_PX = 40  # the slice slider's strip over each view's bottom, in CSS px, kept free when the views are fitted


# below 960 px wide the toolbar's controls need more than one row (their least widths, and the title's text): the
# opacity slider and "Above clean level or median only" go to a second row, the app bar and the page's top grown to
# match (in one row the checkbox had run off the page below 760 px and the title had shrunk to nothing below 1100: a
# viewer audit)
TOOLBAR_ROWS_PX = 960


# below 600 px two rows no longer hold them: the checkbox had wrapped to a third row the views covered (a viewer audit).
# Three rows then, each control placed: the title and the method; the display and the checkbox; the opacity slider.
TOOLBAR_THREE_ROWS_PX = 600


TOOLBAR_CSS = (f"@media (max-width: {TOOLBAR_ROWS_PX - 1}px) {{ "
               "header.v-app-bar, header.v-app-bar .v-toolbar__content { height: 112px !important; } "
               "header.v-app-bar .v-toolbar__content { flex-wrap: wrap; align-content: space-evenly; } "
               ".iqt-break { display: block !important; flex-basis: 100%; height: 0; } "
               ".iqt-opacity { margin-left: auto !important; } "
               ".v-main { --v-layout-top: 112px !important; } } "
               f"@media (max-width: {TOOLBAR_THREE_ROWS_PX - 1}px) {{ "
               "header.v-app-bar, header.v-app-bar .v-toolbar__content { height: 168px !important; } "
               "header.v-app-bar .v-toolbar__content { padding-left: 8px; } "
               ".iqt-break3 { display: block !important; flex-basis: 100%; height: 0; } "
               ".iqt-display { margin-left: auto !important; flex-basis: 130px !important; } "
               ".iqt-from-median { order: 1; } .iqt-break { order: 2; } .iqt-opacity { order: 3; } "
               ".v-main { --v-layout-top: 168px !important; } }")


# each view's picture element given its frame's whole box: trame-rca sizes the image by its width alone, centred, so for
# the second or more a resize takes to bring a frame of the new size the picture had sat offset in its box, a blank band
# above and below it or its top and bottom cut (at 1000 x 800 px a band of 104 px). That last frame is shown whole,
# scaled into the box, unstretched (contain: cover had cut half of a sagittal view made narrower,
# Testing/apps/test_view.py); a frame of the box's size fills it exactly
VIEWS_CSS = ("#iqt-views .display-area > img.image-display-area { width: 100% !important; height: 100% !important; "
             "display: block; object-fit: contain; object-position: center; }")


# the lines of the views' labels and of the status line under the views, a whole number of pixels high (with their
# padding, 30 and 20 px a line): at the font's own line heights (30.5 and 19.5 px) the views began half a pixel down,
# their frames' borders and pictures drawn across two rows of pixels (or, the labels' alone made whole, a frame 580.5 px
# high drew a 580 px picture resampled)
LABEL_LINE_PX = 22
STATUS_LINE_PX = 16


# the page once the server has gone: said in words, on the page's dark ground, with what to do (trame's white "Connection
# closed" page named no viewer and no way back: a viewer audit)
STOPPED = ('<div id="iqt-stopped" style="background: #121212; color: #ddd; height: 100vh; display: flex; '
           'align-items: center; justify-content: center; font: 18px Roboto, sans-serif; text-align: center;">'
           '<div><div style="font-size: 22px; margin-bottom: 12px;">The IQT viewer has stopped.</div>'
           '<div>Its <code>iqt view</code> command ended (Ctrl-C, or its terminal closed), so this page shows nothing '
           'more.<br>Start <code>iqt view</code> again, then reload this page.</div></div></div>')


def port_in_use(port: int, host: str) -> IQTError:
    """The one line for a port another program holds (said before the input is read, and again if it is taken while
    the page is built)."""
    return IQTError(f"--port {port}: that port is in use on {host}; choose another with --port N (or --port 0 for any "
                    "free port)")


def check_port(port: int, host: str) -> None:
    """`port` free on each of `host`'s addresses, bound as the server binds it (SO_REUSEADDR, so a port a stopped
    viewer left in TIME_WAIT passes): a port in use had been said only once the input was read, the model loaded and
    the page built, 40 s on the shared machine (a viewer audit). Port 0 is always free."""
    import errno
    import socket

    if port == 0:
        return
    for family, kind, proto, _, where in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                            flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise port_in_use(port, host) from None
                # another reason (an address that cannot be bound): check_host has said it, the server says the rest


def import_trame():
    """The trame-slicer modules the page needs, or one line saying how to install them."""
    try:
        from trame.app import get_server  # noqa: F401
        from trame_slicer.core import LayoutManager, SlicerApp  # noqa: F401
        from trame_slicer.rca_view import register_rca_factories  # noqa: F401
    except ImportError as exc:
        raise IQTError(f"'iqt view' needs trame-slicer ({exc}); {install_extra('render')}") from None
