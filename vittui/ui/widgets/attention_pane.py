"""The attention pane: a probe image and its heatmap side by side, with the statistics of the selected
layer and head and the probe's flags underneath.

Colour terminals get half-blocks (▀, fg the upper pixel, bg the lower); without colour (NO_COLOR, or a
console with no colour system) the plain ramp ` .:-=+*#%@` draws both, so the map still reads. Flags carry a
FLAG tag so colour is never the only cue. The screen computes nothing here: it hands down an
`AttentionView` (attributes down) and this widget only draws it."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from vittui.ui.heatmap import HALF_BLOCK, ascii_heatmap, halfblock_cells, image_cells
from vittui.runs.events import AttentionProbe
from vittui.ui.probeview import LoadedProbe, Selection, attention_map, image_of, luminance, map_label

MAP_COLS = 16
MAP_ROWS = 8
GAP = "  "
KEYS_HINT = "keys l/L h/H o i/I < >  (? help)"


@dataclass
class AttentionView:
    probes: int = 0  # how many probes the run has
    index: int = -1  # which one is shown (0-based)
    live: bool = True  # following the newest probe
    event: AttentionProbe | None = None
    probe: LoadedProbe | None = None  # None while loading
    selection: Selection = field(default_factory=Selection)
    error: str = ""
    off: str = ""  # the run's "attention probe off: why" line, when probing switched off


def _fmt(v: float | None, spec: str) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "–"
    return format(v, spec)


def _stat(rows: list, i: int, j: int | None = None) -> float | None:
    try:
        v = rows[i] if j is None else rows[i][j]
    except (IndexError, TypeError):
        return None
    return v


class AttentionPane(Static):
    can_focus = True

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.view = AttentionView()
        self.border_title = "attention"

    # --- attributes down --------------------------------------------------------------------------
    def show(self, view: AttentionView) -> None:
        self.view = view
        self.update(self.build(), layout=False)

    @property
    def use_colour(self) -> bool:
        if os.environ.get("NO_COLOR"):
            return False
        try:
            app = self.app
        except Exception:  # noqa: BLE001 - not mounted
            return False
        if getattr(app, "no_color", False):
            return False
        return app.console.color_system is not None

    def on_resize(self) -> None:
        self.update(self.build(), layout=False)

    @property
    def text(self) -> str:
        return self.build().plain

    def map_lines(self) -> list[str]:
        """The heatmap rows as plain text (the ASCII ramp), whatever the terminal: for tests and logs."""
        v = self.view
        if v.probe is None:
            return []
        return ascii_heatmap(attention_map(v.probe, v.selection.clamp(v.probe)), MAP_COLS, MAP_ROWS)

    # --- drawing ----------------------------------------------------------------------------------
    def build(self) -> Text:
        """Maps on the left (image, then heatmap), the words on the right, one Text of lines."""
        v = self.view
        t = Text(no_wrap=True, overflow="ellipsis")
        if v.probes == 0 or v.event is None:
            if v.off:
                t.append("OFF ", style="bold reverse yellow")
                t.append(v.off, style="yellow")
                return t
            t.append("no attention probe yet\n", style="dim")
            t.append("the run saves one every run.probe_every steps", style="dim")
            return t
        ev = v.event
        where = f"step {ev.step}  probe {v.index + 1}/{v.probes}" + ("  live" if v.live else "  (> newer)")
        p = v.probe
        if v.error or p is None:
            t.append(where + "\n", style="bold")
            if v.error:
                t.append(f"ERROR cannot read {ev.path}: {v.error}", style="bold red")
            else:
                t.append(f"loading {ev.path}…", style="italic")
            return t
        sel = v.selection.clamp(p)
        info = self._info_lines(where, ev, p, sel)
        hint = [(KEYS_HINT, "dim")]
        maps = _map_rows(p, sel, self.use_colour)
        height = max(MAP_ROWS + 1, len(info) + 1)
        avail = self.size.height or height
        blank = " " * (2 * MAP_COLS + len(GAP))
        for r in range(height):
            if r < MAP_ROWS:
                for text, style in maps[r]:
                    t.append(text, style=style)
            elif r == MAP_ROWS:
                t.append("image".ljust(MAP_COLS) + GAP + ("rollout" if sel.rollout else "attention").ljust(MAP_COLS),
                         style="dim")
            else:
                t.append(blank)
            t.append(GAP)
            # the keys hint takes the last visible line when the words leave room for it
            line = info[r] if r < len(info) else (hint if r == max(len(info), min(height, avail) - 1) else [])
            for text, style in line:
                t.append(text, style=style)
            if r < height - 1:
                t.append("\n")
        return t

    def _info_lines(self, where: str, ev: AttentionProbe, p: LoadedProbe,
                    sel: Selection) -> list[list[tuple[str, str]]]:
        """The words, one list of (text, style) segments per line: what is shown, its statistics, the flags."""
        info: list[list[tuple[str, str]]] = [[(where, "bold")]]
        if self.view.off:  # probing stopped after this probe: say why, above everything else
            info.append([("OFF ", "bold reverse yellow"), (self.view.off, "yellow")])
        info += [
            [(f"image {sel.image + 1}/{p.images_count}", "")],
            [(f"map: {map_label(p, sel.rollout)}", "bold" if p.query != "cls" else "")],
            [(f"rollout, {p.layers} layers (heads mean)" if sel.rollout
              else f"layer {sel.layer}  head {sel.head}  ({p.layers} layers x {p.heads} heads)", "")],
        ]
        ent = _stat(ev.entropy, sel.layer, sel.head)
        dist = _stat(ev.distance, sel.layer, sel.head)
        div = _stat(ev.diversity, sel.layer)
        stats_of = "" if not sel.rollout else f"  at layer {sel.layer} head {sel.head}"
        info.append([(f"entropy {_fmt(ent, '.3f')} (norm.){stats_of}", "")])
        info.append([(f"mean distance {_fmt(dist, '.1f')} px", "")])
        info.append([(f"head similarity {_fmt(div, '.3f')} (layer {sel.layer})", "")])
        return info + self._flag_lines(ev.flags, sel.layer, len(info))

    def _flag_lines(self, flags: list[str], layer: int, used: int) -> list[list[tuple[str, str]]]:
        """The probe's flags, the selected layer's first, cut to the lines left below `used` ones (and the keys)."""
        if not flags:
            return [[("OK ", "bold green"), ("no attention flags", "green")]]

        def mine(flag: str) -> bool:  # flags number layers from 0, as the model's modules do
            return f"layer {layer}:" in flag or f"layers {layer}-" in flag or f"-{layer}:" in flag

        ordered = sorted(flags, key=lambda f: not mine(f))  # the selected layer's flags first
        room = max(MAP_ROWS + 1, self.size.height or 0) - 1 - used  # keep the last line for keys
        if self.size.height and len(ordered) > room:
            shown, more = ordered[: max(0, room - 1)], len(ordered) - max(0, room - 1)
        else:
            shown, more = ordered, 0
        lines = [[("FLAG ", "bold reverse yellow"), (flag, "bold yellow" if mine(flag) else "yellow")]
                 for flag in shown]
        if more:
            lines.append([("FLAG ", "bold reverse yellow"), (f"+{more} more (l/L to see each layer's)", "yellow")])
        return lines


def _half_blocks(cells) -> list[tuple[str, Style]]:
    return [(HALF_BLOCK, Style(color=Color.from_rgb(*fg), bgcolor=Color.from_rgb(*bg))) for fg, bg in cells]


def _map_rows(p: LoadedProbe, sel: Selection, colour: bool) -> list[list[tuple[str, Style | None]]]:
    """The MAP_ROWS rows of the image and the heatmap side by side, as (text, style) segments: half-blocks in
    colour, else the plain ramp."""
    amap = attention_map(p, sel)
    img = image_of(p, sel.image)
    if not colour:
        left_lines = (ascii_heatmap(luminance(img), MAP_COLS, MAP_ROWS, vmin=0, vmax=255, method="area")
                      if img is not None else [" " * MAP_COLS] * MAP_ROWS)
        right_lines = ascii_heatmap(amap, MAP_COLS, MAP_ROWS)
        return [[(left_lines[r] + GAP + right_lines[r], None)] for r in range(MAP_ROWS)]
    left = image_cells(img, MAP_COLS, MAP_ROWS) if img is not None else None
    right = halfblock_cells(amap, MAP_COLS, MAP_ROWS)
    return [(_half_blocks(left[r]) if left is not None else [(" " * MAP_COLS, None)]) + [(GAP, None)]
            + _half_blocks(right[r]) for r in range(MAP_ROWS)]
