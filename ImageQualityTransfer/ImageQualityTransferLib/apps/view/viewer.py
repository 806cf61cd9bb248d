"""The `iqt view` page and its state (Viewer): Slicer's own slice views, served by trame-slicer: cubic
interpolation | IQT side by side (linked), the uncertainty overlay with its legend, an opacity slider and "Above clean
level or median only", a method picker that runs the engine in the background with a progress bar, and colour-FA /
FA display of the tensors.

The engine runs in a worker thread on numpy Volumes; MRML nodes are only touched on the server's event loop.
`iqt view` refuses bad input before serving (apps/cli/view.py); a Viewer given a path reads it itself, and then shows
bad input (not a tensor volume, a mask on another grid) as one line in the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import numpy as np

from ...core.errors import IQTError
from ...core.i18n import options_named
from ...slicer import display, legends, mrml, processing
from ...slicer.render import quiet_vtk_warnings
from .. import signals
from . import stopping
from .engine import fa_volume, first_method, viewer_options
from .page import (CONVENTION, DISPLAYS, LABEL_LINE_PX, LEFT, OPACITY, POLL_S, SLIDER_PX, STATUS_LINE_PX,
                   STILL_QUALITY, STOPPED, TOOLBAR_CSS, VIEWS_CSS, import_trame, port_in_use)
from .stopping import _stop_loop_on_signal, _Worker

log = logging.getLogger(__name__)


class Viewer:
    """The page and its state: one scene, two linked slice views, one engine run at a time."""

    def __init__(self, input_path, method: str | None = None, factor=2, mask_path=None, server_name="iqt-view",
                 tensor_order: str = "nifti", loaded=None):
        """`loaded`: (the input Volume, its mask Volume or None) where the caller has read and checked them already
        (`iqt view` does, so that bad input gets one line and exit 2 before anything is served)."""
        import_trame()
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

        from ... import methods
        from ...core.grid import factors

        self.input_path, self.factor, self.mask_path = Path(input_path), factors(factor), mask_path
        self.tensor_order = tensor_order
        self.server = server = get_server(server_name, client_type="vue3")
        server.enable_module(trame_slicer_module)
        self.app = SlicerApp()
        quiet_vtk_warnings()  # after the app: slicer-core sets VTK's output window to print everything
        self.scene = self.app.scene
        self._positions: list = []  # (state key, slice view): the slice said above each view (_view_gutter)
        self._saying = False  # a _say_slices queued on the server's loop
        self._loop = None  # the server's event loop, once it serves
        register_rca_factories(self.app.view_manager, server, slice_view_ui_f=self._view_gutter)
        self.layout_manager = LayoutManager(self.scene, self.app.view_manager, server)
        views = [ViewLayoutDefinition.slice_view("Axial", label=name) for name in display.COMPARE_VIEWS]
        self.layout_manager.register_layout("compare", Layout(LayoutDirection.Horizontal, views))
        self.layout_manager.set_layout("compare")

        self.executor = _Worker()
        self._work = None  # the run under way's future (serve waits for it to stop)
        self._stop = threading.Event()  # set once serving ends: the run under way stops at its next tile (serve)
        self.lr = self.mask = self.in_node = None
        self._loaded = loaded
        self._said: set[str] = set()  # notes already printed on the terminal
        self.nodes: dict = {}
        self.fa_nodes: dict = {}
        self._progress = (0.0, "")
        self._fitted = False
        self._fitted_legend = False  # whether the views were last fitted with a strip kept for the legend
        self._seen: dict = {}  # slice node ID: (dimensions, field of view, centre) as last seen (_remember)
        self._before: dict = {}  # slice node ID: the same as it was before its size last changed, until _on_resize
        self._bottom_px = SLIDER_PX  # the slider's strip in render pixels at the last fit (_slider_px)
        self._lock = threading.Lock()
        self._running = None  # the method of the run under way
        self._waiting = ""  # a pick made meanwhile, said in the status until the run ends
        self._shown_notes: list[str] = []  # the notes of the result in the right view

        choices = methods.ready(self.factor) or ["cubic"]
        s = server.state
        s.trame__title = "IQT viewer"
        s.trame__template_error = STOPPED  # what the page shows once its connection closes (trame's own: "Connection closed")
        s.methods = choices
        s.method = first_method(method, self.factor, loaded[0].voxel_size if loaded else None)
        s.busy = False
        s.input_ok = False  # the pickers wait for an input that loaded
        s.progress = 0
        s.status = "starting"
        s.message = ""
        s.notes = []  # the engine's warnings about the run shown (one line each), as the Slicer module's status shows them
        s.opacity = OPACITY
        s.from_median = True  # each map coloured from its clean level or median, the lower (legends._floor_of)
        s.display_mode = "tensor"
        s.shown = ""  # the method whose result is in the right view
        s.has_uncertainty = False
        s.runs = 0
        s.pages = 0  # browser tabs or windows open on this server: they share one state and one picture
        s.running = ""  # the method being computed, said over the right view until its result replaces the picture
        s.stopping = ""  # why the server stops, said over the whole page until it has (_say_stopping)
        s.change("opacity")(self._on_opacity)
        s.change("from_median")(self._on_from_median)
        s.change("display_mode")(self._on_display_mode)
        self._build_ui()
        from vtkmodules.vtkCommonCore import vtkCommand

        for slice_view in self.app.view_manager.get_slice_views():  # after trame-slicer's own (priority 0) resizes the node
            slice_view.interactor().AddObserver(vtkCommand.WindowResizeEvent, self._on_resize, -1.0)
            slice_view.get_view_node().AddObserver(vtkCommand.ModifiedEvent, self._slices_moved)
            slice_view.get_view_node().AddObserver(vtkCommand.ModifiedEvent, self._remember)
        server.controller.on_server_ready.add(self._on_ready)
        server.controller.on_client_connected.add(self._render)  # a new page gets the views' current frame

    # ------------------------------------------------------------ page

    def _build_ui(self) -> None:
        from trame.widgets import client, html, vuetify3 as v
        from trame_vuetify.ui.vuetify3 import SinglePageLayout

        with SinglePageLayout(self.server, full_height=True) as layout:
            layout.root.theme = "dark"
            layout.title.set_text("IQT viewer")
            layout.title.style = "flex: 0 0 auto;"  # its text whole: the controls give way, or go to a second row
            layout.icon.hide()  # the template's menu icon: this page has no drawer for it to open
            with layout.toolbar:
                client.Style(TOOLBAR_CSS + " " + VIEWS_CSS)
                v.VSpacer()
                # shown, not bound both ways: only the server sets `method` (the run it starts), so that every tab's
                # picker names the method computed or shown; a tab's own write raced another's (a viewer audit)
                v.VSelect(id="iqt-method", label="IQT method", model_value=("method",), items=("methods",),
                          update_modelValue=(self._on_method, "[$event]"),
                          disabled=("busy || !input_ok",), density="compact", hide_details=True,
                          style="flex: 1 1 220px; min-width: 150px; max-width: 220px", classes="mx-2 iqt-method")
                html.Div(classes="iqt-break3", style="display: none;")  # a very narrow window's second row
                v.VSelect(id="iqt-display", label="Display", v_model=("display_mode",),
                          items=("display_items", [{"title": t, "value": k} for t, k in DISPLAYS]),
                          disabled=("busy || !input_ok",), density="compact", hide_details=True,
                          style="flex: 1 1 190px; min-width: 130px; max-width: 190px", classes="mx-2 iqt-display")
                html.Div(classes="iqt-break", style="display: none;")  # where a narrow window's second row begins
                # off for a method without uncertainty (nothing to fade); a right margin keeps the handle at 1.0 whole;
                # a minimum width: the pickers give way first (before, its track was 41 px at 900 px wide, 0 at 683)
                # `name`: Vuetify's slider handle (role slider, what Tab reaches) takes its aria-label from it; the
                # label beside it is not tied to the handle, which a screen reader had said unnamed (a viewer audit)
                v.VSlider(id="iqt-opacity", label="Uncertainty opacity", name="Uncertainty opacity",
                          v_model=("opacity",), min=0, max=1, step=0.05, density="compact", hide_details=True,
                          disabled=("busy || !has_uncertainty",),
                          style="flex: 1 1 300px; min-width: 240px; max-width: 300px",
                          classes="ml-2 mr-6 iqt-opacity")
                v.VCheckbox(id="iqt-from-median", label="Above clean level or median only", v_model=("from_median",),
                            density="compact", hide_details=True, disabled=("busy || !has_uncertainty",),
                            style="flex: 0 0 auto; max-width: 220px", classes="mr-4 iqt-from-median")
                v.VProgressLinear(v_model=("progress",), active=("busy",), absolute=True, location="bottom",
                                  color="amber", height=4)
            with layout.content:
                with html.Div(style="display: flex; flex-direction: column; height: 100%;"):
                    # its own height, as the notes: grown, it had squeezed the views and their legend (a viewer audit)
                    # the page is one shared session: a pick in one tab changes every tab's picture, so each says so
                    v.VAlert(id="iqt-pages", v_if=("pages > 1",), type="info", density="compact", variant="tonal",
                             text=("`This viewer is open in ${pages} browser tabs or windows: they show one picture, and "
                                   "a method or display picked in any of them changes it in all.`",),
                             classes="ma-2", style="flex: 0 0 auto; font-size: 14px;")
                    v.VAlert(id="iqt-message", v_if=("message",), type="error", density="compact",
                             text=("message",), classes="ma-2", style="flex: 0 0 auto; font-size: 14px;")
                    with v.VAlert(id="iqt-notes", v_if=("notes.length",), type="warning", density="compact",
                                  variant="tonal", classes="ma-2", style="flex: 0 0 auto; font-size: 14px;"):
                        html.Div("{{ note }}", v_for="note in notes", classes="iqt-note")
                    with html.Div(style=f"display: flex; flex-direction: row; color: #ddd; font-size: 15px; "
                                        f"line-height: {LABEL_LINE_PX}px;"):
                        html.Div("{{ shown ? 'cubic interpolation' : 'input' }}",
                                 style="flex: 1 1 0; min-width: 0; padding: 4px 12px;")
                        with html.Div(style="flex: 1 1 0; min-width: 0; padding: 4px 12px; display: flex; "
                                            "justify-content: space-between;"):
                            html.Div("{{ shown ? shown + (has_uncertainty ? ' + uncertainty' : ' (no uncertainty)') : "
                                     "'input' }}")
                            # while a run computes the picture is still the last result: said beside its label, where
                            # the eye is (the status line and the 4 px bar alone went unseen: a viewer audit)
                            with html.Div(id="iqt-running", v_if=("running",), classes="d-flex align-center",
                                          style="color: #ffc107; font-weight: 500;"):
                                v.VProgressCircular(indeterminate=True, size=16, width=2, color="amber", classes="mr-2")
                                html.Div("computing {{ running }}: {{ progress }} %")
                            # the convention in words, as the report states it (Slicer's views: right on screen left)
                            html.Div(CONVENTION, id="iqt-convention", style="color: #aaa; font-size: 13px;")
                    with html.Div(id="iqt-views", style="flex: 1; display: flex; min-height: 0;"):
                        self.layout_manager.initialize_layout_grid(layout)
                    html.Div("{{ status }}", id="iqt-status",
                             style=f"color: #aaa; padding: 2px 12px; font-size: 13px; line-height: {STATUS_LINE_PX}px;")
                # over the whole page, its controls too: the loop stops right after it is sent (Viewer._say_stopping)
                with html.Div(id="iqt-stopping", v_if=("stopping",),
                              style="position: fixed; inset: 0; z-index: 3000; background: rgba(18, 18, 18, 0.85); "
                                    "color: #ddd; display: flex; align-items: center; justify-content: center; "
                                    "font: 18px Roboto, sans-serif; text-align: center;"):
                    with html.Div(style="max-width: 720px; padding: 16px;"):
                        html.Div("The IQT viewer is stopping.", style="font-size: 22px; margin-bottom: 12px;")
                        html.Div("{{ stopping }}")
        self.ui = layout

    def _view_gutter(self, server, view_id, view) -> None:
        """Each slice view's own controls, trame-slicer's but for Reset Camera, which refits both views together
        (trame-slicer's refitted the one view, and the other kept its old pan: the two out of register), and without
        the "3D" toggle (no 3D view here)."""
        from trame.widgets import html, vuetify3 as v
        from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
        from trame_slicer.app.ui.slider import Slider

        # where the slice is, as Slicer's views say it: its number among the shown volume's and its offset in mm, read
        # from the slice node itself (the page had said neither: a viewer audit)
        key = f"iqt_slice_{len(self._positions)}"
        self._positions.append((key, view))
        server.state[key] = ""
        html.Div(f"{{{{ {key} }}}}", classes="iqt-slice-pos",
                 style="position: absolute; top: 10px; left: 44px; color: #ddd; font-size: 13px; white-space: nowrap; "
                       "pointer-events: none;")
        with html.Div(classes="view-gutter", style="position: absolute; top: 0; left: 0; background-color: transparent;"):
            with html.Div(classes="view-gutter-content d-flex flex-column fill-height pa-2"):
                with v.VBtn(size="medium", variant="text", click=self.reset_views, classes="iqt-reset"):
                    v.VIcon(icon="mdi-camera-flip-outline", size="medium", color="white")
                    v.VTooltip("Reset Camera (both views)", activator="parent", location="right")
                # no "Show in 3D" toggle: the layout has no 3D view for it to show a slice in
        with html.Div(classes="slice-slider-gutter",
                      style="position: absolute; bottom: 0; left: 0; background-color: transparent; width: 100%;"):
            Slider(classes="slice-slider", typed_state=connect_slice_view_slider_to_state(server, view), theme="dark",
                   dense=True)

    def reset_views(self, *_) -> None:
        """Both views fitted again to the shown volume, together, as `_show` first fits them (with the legend's strip
        where a map is shown), the slice kept."""
        self._fit_views()
        self._render()

    def _fit_views(self) -> None:
        """`reset_views` without the render; a size change remembered before this fit is dropped (it would be read
        against the wrong fit: a review)."""
        tensor = (self.nodes or {}).get("tensor")
        shown = tensor if tensor is not None else self.in_node
        if shown is None:
            return
        orientation = display.view_for_node(shown)
        legend = (self.nodes or {}).get("uncertainty") is not None
        nodes = [display.slice_node(self.scene, name) for name in display.COMPARE_VIEWS]
        offset = nodes[0].GetSliceOffset()
        self._bottom_px = self._slider_px()
        for node in nodes:
            display._fit_slice(node, shown, orientation, legend=legend, bottom_px=self._bottom_px)
            node.SetSliceOffset(offset)
        self._fitted_legend = legend
        self._before.clear()

    def _slices_moved(self, *_) -> None:
        """A slice node changed: its position said again, queued on the server's loop (a key or the wheel in a view
        moves it outside any flush of the page's state, and may come off that loop)."""
        loop = self._loop
        if self._saying or loop is None or loop.is_closed():  # not serving (the tests' Viewer): nothing to say
            return
        self._saying = True
        loop.call_soon_threadsafe(self._say_slices)

    def _say_slices(self) -> None:
        self._saying = False
        with self.server.state as s:
            for key, view in self._positions:
                (low, high), step = view.get_slice_range(), view.get_slice_step()
                offset = view.get_view_node().GetSliceOffset()
                if step > 0 and high >= low:
                    s[key] = f"slice {round((offset - low) / step) + 1} of {round((high - low) / step) + 1}, {offset:.1f} mm"

    def _remember(self, node, *_) -> None:
        """A slice node's size, field of view and centre as last seen, and as they were before its size changed: Slicer's
        resize has changed the field of view by the time `_on_resize` runs."""
        m = node.GetSliceToRAS()
        now = (tuple(node.GetDimensions()), tuple(node.GetFieldOfView()), np.array([m.GetElement(i, 3) for i in range(3)]))
        last = self._seen.get(node.GetID())
        if last is not None and last[0] != now[0]:
            self._before.setdefault(node.GetID(), last)
        self._seen[node.GetID()] = now

    def _on_resize(self, *_) -> None:
        """Both views fitted again when the page's views change size (a window resized, a banner come or gone), once
        both have their new size: Slicer's resize kept the scale along one axis, and a window made wider and shorter
        left the brain small, or cut it off (a viewer audit). A reader's zoom and pan are kept relative to the fit (a
        banner had reset them in every tab); a view at its fit is fitted again."""
        nodes = [display.slice_node(self.scene, name) for name in display.COMPARE_VIEWS]
        if not self._fitted or None in nodes or nodes[0].GetDimensions() != nodes[1].GetDimensions():
            return
        tensor = (self.nodes or {}).get("tensor")
        shown = tensor if tensor is not None else self.in_node
        bottom = self._slider_px()
        for node in nodes:
            before = self._before.pop(node.GetID(), None)
            if shown is not None and before is not None and before[0] != tuple(node.GetDimensions()):
                self._refit(node, shown, before, bottom)
        self._bottom_px = bottom
        self._render()

    def _rca_views(self) -> list:
        """trame-slicer's remote views of the page's slice views (its RcaView: the Slicer view and its trame-rca
        adapter), which trame-slicer keeps in its factories."""
        views = self.app.view_manager.get_slice_views()
        return [rca for factory in getattr(self.app.view_manager, "_factories", [])
                for rca in getattr(factory, "_views", {}).values()
                if getattr(rca, "view_adapter", None) is not None and getattr(rca, "slicer_view", None) in views]

    def _slider_px(self) -> float:
        """The slider's strip in the views' render pixels: trame-rca renders each view at its CSS size times the page's
        devicePixelRatio (its adapter's scale_factor), so on a HiDPI screen 40 render px were 20 CSS px and the brain
        ran under the slider (a viewer audit)."""
        for rca in self._rca_views():
            ratio = float(getattr(rca.view_adapter, "scale_factor", 1.0) or 1.0)
            return SLIDER_PX * (ratio if ratio > 0 else 1.0)
        return float(SLIDER_PX)

    async def _send_frames(self) -> None:
        """Each view rendered now and its frame sent to the page, before the state that names what it shows: trame
        sends a state change at once, while trame-rca renders and sends a view's frame later, from a task of its own
        (1 to 2 s on a loaded machine), so the page had said "done: rf" and "rf + uncertainty" over biqt's picture and
        legend (a viewer audit). wslink sends its messages in the order they are published: the frames arrive first.
        Best effort: it reads trame-rca's and trame-slicer's own parts, and where another version of them fails here the
        run is still done and its frame follows from trame-rca's task, as before (a review: it had said "cubic failed"
        of a run that was shown)."""
        loop = asyncio.get_running_loop()
        for rca in self._rca_views():
            try:
                from trame_rca.encoders import RcaImageEncoder

                adapter = rca.view_adapter
                window = getattr(adapter, "_rca", None)  # trame-slicer's RcaWindow: renders, then reads the frame back
                if adapter.streamer is None or window is None:  # no page served yet: nothing to send it to
                    continue
                image, cols, rows = window.img_cols_rows
                content, meta, _ = await loop.run_in_executor(None, RcaImageEncoder.TURBO_JPEG.encode, image, cols,
                                                              rows, STILL_QUALITY)
                adapter.push(content, meta)
            except Exception as e:  # noqa: BLE001 (another trame-rca or trame-slicer: its own frame follows)
                log.debug("a view's frame not sent ahead of the state: %r", e)

    def _refit(self, node, shown, before, bottom_px: float) -> None:
        """`node` at its new size: its zoom (field of view over the fitted one) and pan (centre off the fitted one, in
        the same share of the fitted field) as they were before the resize (`display.fitted_view`), its slice kept."""
        dims, fov, centre = before
        new_dims = node.GetDimensions()
        _, fit_old, centre_old = display.fitted_view(node, shown, dims, self._fitted_legend, self._bottom_px)
        _, fit_new, centre_new = display.fitted_view(node, shown, new_dims, self._fitted_legend, bottom_px)
        if fit_old <= 0 or not new_dims[1]:
            return
        m = node.GetSliceToRAS()
        normal = np.array([m.GetElement(i, 2) for i in range(3)])
        here = np.array([m.GetElement(i, 3) for i in range(3)])

        def flat(v):
            return v - normal * float(normal @ v)

        scale = fit_new / fit_old
        node.SetFieldOfView(fov[1] * scale * new_dims[0] / new_dims[1], fov[1] * scale, node.GetFieldOfView()[2])
        node.JumpSliceByCentering(*(flat(centre_new) + flat(centre - centre_old) * scale + normal * float(normal @ here)))

    # ------------------------------------------------------------ life cycle

    def _on_ready(self, **_):
        self._loop = asyncio.get_running_loop()
        print(f"iqt view: serving http://{self.host_for_url()}:{self.server.port}/", flush=True)
        from trame_server.utils.asynchronous import create_task

        create_task(self._start())
        create_task(self._count_pages())

    async def _count_pages(self) -> None:
        """`pages`: the browser connections open now, from the websocket handler trame's protocol publishes through
        (polled: a tab closed or crashed sends no word)."""
        while True:
            handler = getattr(getattr(self.server.protocol, "publish", None), "__self__", None)
            ids = list(getattr(handler, "connections", None) or [])
            # a wslink without the check counts every connection (it had raised AttributeError and stopped the count)
            authenticated = getattr(handler, "isClientAuthenticated", None)
            n = sum(1 for c in ids if authenticated is None or authenticated(c))
            if n != self.server.state.pages:
                with self.server.state as s:
                    s.pages = n
            await asyncio.sleep(1.0)

    def _say(self, notes) -> None:
        """Each run note on the terminal too, once, as `iqt upsample` prints its warnings (the page may not be open)."""
        for note in notes:
            if note not in self._said:
                self._said.add(note)
                print(f"iqt view: warning: {note}", file=sys.stderr, flush=True)

    @staticmethod
    def _say_error(message: str) -> None:
        """A run's or the input's refusal on the terminal too, as `iqt upsample` prints it (the page may not be open)."""
        print(f"iqt view: error: {message}", file=sys.stderr, flush=True)

    def host_for_url(self) -> str:
        host = getattr(self, "host", "127.0.0.1")
        return "127.0.0.1" if host in ("0.0.0.0", "", None) else host

    async def _start(self):
        s = self.server.state
        try:
            self._load()
        except Exception as exc:  # bad input (IQTError) or a reader's bug: one line in the page, never a traceback
            text = " ".join(str(exc).split())
            with s:
                s.message = text if isinstance(exc, IQTError) else f"internal error: {type(exc).__name__}: {text}"
                s.status = "error"
            self._say_error(s.message)
            return
        self._show(self.in_node, self.in_node, None)
        await self._send_frames()
        with s:
            s.status, s.input_ok = "input loaded", True
        await self._run(s.method)

    def _load(self) -> None:
        from ... import fileio

        if self._loaded is not None:
            self.lr, self.mask = self._loaded
        else:
            if self.input_path.is_dir():
                raise IQTError(f"{self.input_path}: a folder; give one low-resolution DTI volume in it (.nii.gz or .nrrd)")
            if not self.input_path.is_file():
                raise IQTError(f"{self.input_path}: no such file; give a low-resolution DTI volume (.nii.gz or .nrrd)")
            self.lr = fileio.load_tensor(self.input_path, self.tensor_order)
            self.mask = fileio.load_mask(self.mask_path, self.lr, self.factor) if self.mask_path else None  # either grid
        self.in_node = mrml.add_tensor_node(self.scene, self.lr, self.input_path.name.split(".")[0] or "dti")

    # ------------------------------------------------------------ engine runs

    def _report(self, fraction, message) -> None:
        self._progress = (float(fraction), str(message or ""))

    async def _run(self, method: str):
        """Run `method` in the worker thread, reporting progress to the page; then show its result."""
        s = self.server.state
        if self.lr is None:
            return
        if not self._lock.acquire(blocking=False):  # one run at a time: the pick is said, not dropped without a word
            with s:  # (a viewer audit: a second tab's pick was lost and its picker named a method never shown)
                s.method = self._running
                self._waiting = f"pick {method} again once it has ended"  # kept in the status by the run's polling
                s.status = f"still running {self._running}: {self._waiting}"
            return
        self._running, self._waiting = method, ""
        try:
            with s:
                # the notes kept: they are the shown picture's, replaced with it; cleared here, their banner went and
                # came back at the run's end, and the views' size with it, the first frame after "done" cut to the
                # old size until the page's resize came back (a viewer audit)
                s.busy, s.progress, s.status, s.message = True, 0, f"running {method}", ""
                s.running = s.method = method
            request = processing.Request(method, self.factor, interpolate=True)
            loop = asyncio.get_running_loop()
            self._work = self.executor.submit(self._compute, request)
            future = asyncio.wrap_future(self._work, loop=loop)
            while not future.done():  # the progress each POLL_S, and the result as soon as it is there
                await asyncio.wait([future], timeout=POLL_S)
                fraction, message = self._progress
                with s:
                    s.progress = round(100 * fraction)
                    s.status = (f"{method}: {message}" if message else f"running {method}") + \
                        (f"; {self._waiting}" if self._waiting else "")
            results, fas = await future
            self.nodes = processing.add_result_nodes(self.scene, results, self.in_node.GetName(), method,
                                                     input_node=self.in_node, factor=self.factor)
            for key, vol in fas.items():
                node = self.fa_nodes.get(key)
                self.fa_nodes[key] = mrml.set_scalar_node(node, vol) if node is not None else \
                    mrml.add_scalar_node(self.scene, vol, f"{self.in_node.GetName()}_{key}_fa")
                self._grey(self.fa_nodes[key])
            # each map on its own range, its legend's ticks and median line saying the numbers: on one scale across
            # the methods run in the page, a CNN's SD (0.3 µm²/ms at the top against biqt's 1.0) was one flat colour
            legends.style_results(self.scene, self.nodes, from_median=bool(s.from_median))
            self._show_current()
            legends.refresh_legends(self.scene)  # this run's, and an earlier run's whose map is no longer shown
            await self._send_frames()  # the picture first: the label, "done" and the notes below name what it shows
            with s:
                s.shown, s.progress, s.runs = method, 100, s.runs + 1
                # in the page's words (engine.viewer_options, in _compute): it has --voxel-size of its own
                s.notes = self._shown_notes = [" ".join(n.split()) for n in results["tensor"].meta.get("notes", [])]
                s.has_uncertainty = self.nodes.get("uncertainty") is not None
                # in the same update as the status: a page that reads "done" has its controls on (CI once saw
                # "done: biqt" with the opacity slider still off, busy cleared by a later update)
                s.busy, s.running = False, ""
                s.status = f"done: {method}" + (f"; {self._waiting.replace(' once it has ended', '')}" if self._waiting else "")
            self._say(self._shown_notes)
        except IQTError as exc:  # the run failed; the page keeps the last result (and its notes) and another method
            with s:                # can be picked
                s.message, s.notes = " ".join(str(exc).split()), self._shown_notes
                self._failed(method)
            self._say_error(s.message)
        except Exception as exc:  # a bug in a method: one line in the page, the server keeps serving
            with s:
                s.message = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
                s.notes = self._shown_notes
                self._failed(method)
            self._say_error(s.message)
        finally:
            with s:  # cleared on success, failure and a bug alike: no run said to go on after it ended
                s.busy, s.running = False, ""
            self._running = None
            self._lock.release()

    def _compute(self, request) -> tuple[dict, dict]:
        """Worker thread: the method's and cubic's outputs, and their FA, as Volumes (no MRML here)."""
        self._progress = (0.0, "")
        with options_named(viewer_options()):  # in this thread: a context variable does not cross to it
            results = processing.predict_volumes(self.lr, request, self.mask, progress=self._report,
                                                 cancel=self._stop.is_set)
        fas = {"iqt": fa_volume(results["tensor"]), "interpolated": fa_volume(results["interpolated"])}
        return results, fas

    # ------------------------------------------------------------ display

    def _grey(self, node) -> None:
        d = node.GetDisplayNode()
        grey = mrml._find_color_node_id(self.scene, "Grey")
        if d is not None:
            if grey:
                d.SetAndObserveColorNodeID(grey)
            d.AutoWindowLevelOff()
            d.SetWindowLevelMinMax(0.0, 1.0)

    def _show(self, left, right, overlay) -> None:
        """`left` | `right` (+ `overlay`) in the two views, the slice, zoom and pan kept where the reader left them (review
        45f: each Display switch fitted the views again), in the plane that shows the run's factors (read from its
        tensor output: the FA maps carry none)."""
        s_node = display.slice_node(self.scene, LEFT)
        kept = None
        # a view fitted with (or without) the legend's strip is fitted again when the overlay comes (or goes), or the
        # brain runs off one edge and under the legend on the other
        if s_node is not None and self._fitted and self._fitted_legend == (overlay is not None):
            kept = (s_node.GetSliceOffset(), s_node.GetFieldOfView(), s_node.GetXYZOrigin())
        elif s_node is not None and self._fitted:
            kept = (s_node.GetSliceOffset(), None, None)
        self._fitted_legend = overlay is not None
        tensor = (self.nodes or {}).get("tensor")
        if kept is None or kept[1] is None:  # fitted again below
            self._bottom_px = self._slider_px()
        display.show_comparison(self.scene, left, right, overlay, float(self.server.state.opacity),
                                orientation=display.view_for_node(tensor if tensor is not None else right), marker=True,
                                bottom_px=self._bottom_px)
        if kept is None:
            self._before.clear()  # show_comparison fitted the views
        elif kept[1] is None:  # the overlay came or went: fitted again with (or without) the legend's strip, which
            self._fit_views()  # show_comparison leaves to a view it takes as the reader's (it had stayed off-centre)
        if kept is not None:
            offset, fov, origin = kept
            for name in display.COMPARE_VIEWS:
                node = display.slice_node(self.scene, name)
                if fov is not None:
                    node.SetFieldOfView(*fov)
                    node.SetXYZOrigin(*origin)
                node.SetSliceOffset(offset)
                display.snap_to_voxel_plane(node, right)  # an offset kept from the input's grid: between two slices
        if not self._fitted:
            self._link_views()
        self._fitted = True
        self._render()

    def _link_views(self) -> None:
        """Scrolling, panning or zooming one view moves the other: trame-slicer's slice sliders change the slice
        without Slicer's interaction flags, so the composite nodes' link alone would not follow them. The whole slice
        position is followed (its in-plane centre with its offset), not the offset alone: a view refitted or panned
        on its own had left the other ~75 px off."""
        nodes = [display.slice_node(self.scene, name) for name in display.COMPARE_VIEWS]
        syncing = [False]

        def follower(src, dst):
            def follow(*_):
                if syncing[0] or tuple(src.GetDimensions()) != tuple(dst.GetDimensions()):
                    return
                syncing[0] = True
                try:
                    if src.GetOrientation() == dst.GetOrientation():
                        a, b = src.GetSliceToRAS(), dst.GetSliceToRAS()
                        if any(abs(a.GetElement(i, j) - b.GetElement(i, j)) > 1e-6 for i in range(3) for j in range(4)):
                            b.DeepCopy(a)
                            dst.UpdateMatrices()
                    elif abs(dst.GetSliceOffset() - src.GetSliceOffset()) > 1e-6:
                        dst.SetSliceOffset(src.GetSliceOffset())
                    if not np.allclose(dst.GetFieldOfView(), src.GetFieldOfView()):
                        dst.SetFieldOfView(*src.GetFieldOfView())
                    if not np.allclose(dst.GetXYZOrigin(), src.GetXYZOrigin()):
                        dst.SetXYZOrigin(*src.GetXYZOrigin())
                finally:
                    syncing[0] = False
            return follow

        for src, dst in ((nodes[0], nodes[1]), (nodes[1], nodes[0])):
            src.AddObserver("ModifiedEvent", follower(src, dst))

    def _show_current(self) -> None:
        if not self.nodes:
            return
        if self.server.state.display_mode == "fa" and self.fa_nodes:
            self._show(self.fa_nodes["interpolated"], self.fa_nodes["iqt"], self.nodes.get("uncertainty"))
        else:
            self._show(self.nodes["interpolated"], self.nodes["tensor"], self.nodes.get("uncertainty"))

    def _failed(self, method: str) -> None:
        """The picker back on the method shown (it had named the failed one over another's picture, and picking that
        one again did nothing: a viewer audit), the status saying which failed."""
        s = self.server.state
        s.method = s.shown  # "" before any result: picking the failed method again is then a change, and retries
        s.busy, s.running = False, ""  # with the status that says it failed, as a run's end does
        s.status = f"{method} failed (the message above); {s.shown} is shown" if s.shown else f"{method} failed"

    def _render(self) -> None:
        for view in self.app.view_manager.get_slice_views():
            view.schedule_render()

    def _on_method(self, method, **_):
        if self.lr is None or method == self.server.state.shown or (method == self._running and self._lock.locked()):
            return
        from trame_server.utils.asynchronous import create_task

        create_task(self._run(method))

    def _on_opacity(self, opacity, **_):
        display.set_overlay_opacity(self.scene, float(opacity))
        self._render()

    def _on_from_median(self, from_median, **_):
        legends.share_scales(self.scene, shared=False, from_median=bool(from_median))
        legends.refresh_legends(self.scene)
        self._render()

    def _on_display_mode(self, display_mode, **_):
        self._show_current()

    # ------------------------------------------------------------ serving

    def serve(self, port: int = 8080, host: str = "127.0.0.1") -> None:
        """Serve until Ctrl-C or SIGTERM; trame reads its own options from sys.argv, so it is given none of `iqt`'s.
        The signals are the command's own (apps/signals.py: `iqt: interrupted` and 130), not aiohttp's, which ended the
        server with status 0 and no word; the run under way is cancelled as the Slicer module's Cancel does
        (slicer/progress.py), not joined to its end at exit (a minute, or many, after Ctrl-C)."""
        self.host = host
        argv, sys.argv = sys.argv, sys.argv[:1]
        caught: dict = {}
        before = _stop_loop_on_signal(caught, self._say_stopping)
        try:
            self.server.start(port=port, host=host, open_browser=False, show_connection_info=False, timeout=0,
                              disable_logging=True, thread=True)  # thread: no signal handlers of its own
        except KeyboardInterrupt as exc:
            # a second signal forces the stop with the first's line and status, as in the wait (_wait_for_run)
            signum = caught.get("signum")
            if signum is None and isinstance(exc.__cause__, signals.Terminated):  # outside the loop, raised at once
                signum = exc.__cause__.signum
            if signum not in (None, signal.SIGINT):  # SIGTERM or SIGHUP: said as such, 128 + its number
                raise signals.Terminated(signum) from None
            raise
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or "address already in use" in str(exc):
                raise port_in_use(port, host) from None
            raise
        finally:
            sys.argv = argv
            for sig, handler in before:  # a signal from here on raises at once: a second Ctrl-C ends the wait below
                signal.signal(sig, handler)
            if "arrivals" in caught:
                caught["arrivals"].close()
            self._stop.set()
            self._wait_for_run(caught.get("signum"), forced="forced" in caught, since=caught.get("at"))

    async def _say_stopping(self, signum) -> None:
        """The page told that the server stops, and why, before its loop stops (serve): after it the page could show
        nothing newer, and had said "computing" until the command ended."""
        why = {signal.SIGINT: "got Ctrl-C", signal.SIGTERM: "was sent SIGTERM"}.get(
            signum, "lost its terminal (SIGHUP)" if signum == getattr(signal, "SIGHUP", None) else "was stopped")
        run = (f"; the {self._running} run under way is being cancelled: it stops at its next progress report, or is "
               f"abandoned when the command ends, {stopping.STOP_GRACE_S:g} s after the signal" if self._running else "")
        with self.server.state as s:
            s.stopping = (f"Its iqt view command {why}{run}. This page shows nothing more: once the command has ended, "
                          "start iqt view again, then reload this page.")
        await self.server.network_completion  # sent, not only queued on the loop about to stop

    def _wait_for_run(self, signum=None, forced: bool = False, since: float | None = None) -> None:
        """The run under way stops at its next progress report (Cancelled there); one that reports none for a while
        (a model's single pass) is said on the terminal at once, so that Ctrl-C is not met with silence, and is left
        after STOP_GRACE_S: SIGHUP with its terminal gone has nobody to send a second signal (it had waited for the
        method's next report). Its thread is a daemon's (_Worker), which exit does not join; `iqt view` writes no
        file, so nothing is left half-written. A second signal raises here at once, said as the first (`signum`); one
        that came before (`forced`,
        while the page was told: _stop_loop_on_signal) leaves the run without a wait. STOP_GRACE_S counts from `since`,
        the signal's time.monotonic() (the page's push and the loop's stop come first)."""
        deadline = (time.monotonic() if since is None else since) + stopping.STOP_GRACE_S
        work = self._work
        if work is None or work.done():
            return
        signals.leave_running(work.thread, self._running)  # exited past (signals.exit_past_left_threads)
        if forced:
            return
        try:
            self._wait_until(work, signum, deadline)
        except (KeyboardInterrupt, signals.Terminated):
            if signum is None:
                raise
            # the first signal's line and status, as a second one during the page's push (serve): a Ctrl-C after
            # SIGHUP had ended it "interrupted", 130, here and 129 there
            raise (KeyboardInterrupt() if signum == signal.SIGINT else signals.Terminated(signum)) from None

    def _wait_until(self, work, signum, deadline: float) -> None:
        if not futures.wait([work], timeout=stopping.STOP_SAY_S).not_done:
            return
        again = "Ctrl-C" if signum in (None, signal.SIGINT) else f"send {signal.Signals(signum).name}"  # as received
        with contextlib.suppress(OSError):  # a terminal gone (SIGHUP): EIO had replaced the signal, exit 1
            print(f"stopping: waiting for {self._running or 'the method'} to reach a point where it can stop, "
                  f"{stopping.STOP_GRACE_S:g} s at most; {again} again to force", file=sys.stderr, flush=True)
        while not work.done() and time.monotonic() < deadline:  # in slices: a signal that lands as a wait starts, or
            futures.wait([work], timeout=min(deadline - time.monotonic(), 0.1))  # in another thread, waits for its end


