"""A self-contained HTML document: one file that opens from disk, with no server and no network.

The caller adds figures (Plotly figure JSON), images and audio and writes HTML around the
tags this module returns; :meth:`ReportDocument.write` puts it all in one file:

- plotly.js is inlined once (the caller passes its text);
- every figure's JSON sits in its own ``<script type="application/json">`` block and is
  drawn when it scrolls into view (a report may hold hundreds of radars), with the
  Plotly toolbar's PNG and SVG download named per figure;
- every image and audio clip is stored once, however often it is shown (a song's
  spectrogram serves all of its examples), as data URIs in the file, or, past
  ``inline_limit`` bytes, as files in a sibling folder ``<name>_files/`` that the HTML
  references by relative path.

Nothing here knows the run store or the dashboard: text, bytes and figure dicts in, a
file out. Every string that reaches the HTML goes through :func:`esc` or JSON escaping.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

INLINE_LIMIT = 48 * 1024 * 1024  # bytes of media embedded before they go to a sibling folder
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/svg+xml": ".svg", "audio/wav": ".wav",
              "audio/mpeg": ".mp3", "audio/ogg": ".ogg", "audio/flac": ".flac"}

# Draws figures lazily, fills media from the table, adds the SVG download to the mode bar.
_SCRIPT = r"""
(function () {
  "use strict";
  function draw(div) {
    if (div.getAttribute("data-drawn")) return;
    div.setAttribute("data-drawn", "1");
    var spec = JSON.parse(document.getElementById(div.getAttribute("data-fig")).textContent);
    var config = whypopExportConfig({displaylogo: false, responsive: true, scrollZoom: false,
      modeBarButtons: [["toImage"]], toImageButtonOptions: {format: "png", filename: spec.filename, scale: 2}});
    Plotly.newPlot(div, spec.figure.data || [], spec.figure.layout || {}, config);
  }
  var figs = Array.prototype.slice.call(document.querySelectorAll("div[data-fig]"));
  var lazy = "IntersectionObserver" in window;
  if (lazy) {
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { seen.unobserve(e.target); draw(e.target); } });
    }, {rootMargin: "400px 0px"});
    figs.forEach(function (d) { seen.observe(d); });
  } else { figs.forEach(draw); }
  // media after the first figures: images off screen decode when they come near (loading=lazy)
  var media = JSON.parse(document.getElementById("wp-media").textContent);
  var els = document.querySelectorAll("[data-media]");
  for (var i = 0; i < els.length; i++) {
    if (els[i].tagName === "IMG") els[i].loading = "lazy";
    els[i].src = media[els[i].getAttribute("data-media")];
  }
  function all() {
    figs.forEach(draw);
    document.querySelectorAll("img").forEach(function (im) { im.loading = "eager"; });
  }
  window.addEventListener("beforeprint", all);
  window.whypopDrawAll = all;
})();
"""

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 1.5rem 4rem; color: #212529; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.3rem; border-bottom: 1px solid #ddd;
  padding-bottom: .2rem; margin-top: 2.2rem; } h3 { font-size: 1.1rem; margin: 1.6rem 0 .3rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e5e5e5; padding: .2rem .6rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #6c757d; } .small { font-size: .85rem; }
.flag { color: #b02a37; } .badge { display: inline-block; white-space: nowrap; padding: 0 .4em; border-radius: .3em; font-size: .8rem;
  background: #6c757d; color: #fff; } .badge.ok { background: #198754; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; } .row > * { flex: 1 1 420px; min-width: 0; }
.wp-fig { width: 100%; }
.concept { border: 1px solid #e3e3e3; border-radius: .4rem; padding: .6rem .8rem; margin: 1rem 0; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: .6rem; }
.example { min-width: 0; } .example .song { font-size: .75rem; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.pair { display: flex; gap: 4px; align-items: flex-end; height: 104px; }
.pair img { image-rendering: pixelated; border: 1px solid #ddd; background: #eee; }
.patch { max-height: 100px; max-width: 70px; object-fit: contain; }
.context { position: relative; width: 100px; height: 100px; flex: none; }
.context img { position: absolute; left: 0; top: 0; width: 100px; height: 100px; }
.context img.overlay { border-color: transparent; background: transparent; }
audio { height: 28px; width: 100%; }
"""


def esc(text: Any) -> str:
    """HTML-escape anything user-derived (song, genre, concept and parameter names)."""
    return html.escape(str(text), quote=True)


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, ``<!--`` or ``]]>`` can appear)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@dataclass(frozen=True)
class ReportFile:
    """What :meth:`ReportDocument.write` wrote: the HTML and (maybe) its media folder."""

    path: Path
    html_bytes: int
    media_bytes: int  # media bytes before encoding (images and audio)
    media_folder: Path | None  # None: everything is inside the HTML file
    figures: int
    images: int
    audio: int

    @property
    def total_bytes(self) -> int:
        """Bytes on disk: the HTML plus the media folder, if any."""
        return self.html_bytes + (self.media_bytes if self.media_folder is not None else 0)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "html_bytes": self.html_bytes, "media_bytes": self.media_bytes,
                "media_folder": None if self.media_folder is None else str(self.media_folder),
                "total_bytes": self.total_bytes, "figures": self.figures, "images": self.images, "audio": self.audio}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReportFile":
        return cls(Path(d["path"]), int(d["html_bytes"]), int(d["media_bytes"]),
                   None if d.get("media_folder") is None else Path(d["media_folder"]),
                   int(d["figures"]), int(d["images"]), int(d["audio"]))


class ReportDocument:
    """Collects figures and media for one HTML file; tags come back as HTML strings."""

    def __init__(self, title: str, plotly_js: str, scripts: tuple[str, ...] = (), css: str = "",
                 inline_limit: int = INLINE_LIMIT):
        if "</script" in plotly_js.lower():
            raise ValueError("the plotly.js text contains '</script' and cannot be inlined")
        self.title = title
        self.plotly_js = plotly_js
        self.scripts = tuple(scripts)
        self.css = css
        self.inline_limit = int(inline_limit)
        self._figures: list[str] = []  # script blocks
        self._media: dict[str, tuple[str, bytes]] = {}  # key -> (mime, data)
        self._digests: dict[str, str] = {}  # content digest -> key
        self._n_images = self._n_audio = 0

    # -- content ------------------------------------------------------------------------------
    def figure(self, figure: Any, filename: str, height_px: float | None = None, css_class: str = "") -> str:
        """A placeholder ``<div>`` drawn as ``figure`` (a ``go.Figure`` or its JSON dict).

        ``filename``: what the toolbar's PNG/SVG download is called (no extension).
        """
        if hasattr(figure, "to_json"):
            fig_json = figure.to_json()  # plotly's encoder: numpy arrays, NaN -> null
        else:
            fig_json = json.dumps(figure, separators=(",", ":"))
        key = f"wp-fig-{len(self._figures)}"
        payload = '{"filename":' + json.dumps(_safe_filename(filename)) + ',"figure":' + fig_json + "}"
        self._figures.append(f'<script type="application/json" id="{key}">{script_json(payload)}</script>')
        if height_px is None and hasattr(figure, "layout"):
            height_px = figure.layout.height
        style = f' style="height:{int(height_px)}px"' if height_px else ""
        return f'<div class="wp-fig {esc(css_class)}" data-fig="{key}"{style}></div>'

    def media_key(self, data: bytes, mime: str) -> str:
        """The key of ``data`` in the media table (stored once per distinct content)."""
        digest = hashlib.sha1(mime.encode() + b"\0" + data).hexdigest()
        key = self._digests.get(digest)
        if key is None:
            key = f"m{len(self._media)}"
            self._media[key] = (mime, data)
            self._digests[digest] = key
        return key

    def image(self, data: bytes, alt: str, css_class: str = "", mime: str = "image/png", title: str | None = None) -> str:
        """An ``<img>`` showing ``data``; ``alt`` and ``title`` are escaped here."""
        self._n_images += 1
        key = self.media_key(data, mime)
        extra = f' title="{esc(title)}"' if title else ""
        return f'<img data-media="{key}" alt="{esc(alt)}" class="{esc(css_class)}"{extra}>'

    def audio(self, data: bytes, mime: str = "audio/wav", label: str = "") -> str:
        """An ``<audio controls>`` element playing ``data``."""
        self._n_audio += 1
        key = self.media_key(data, mime)
        return f'<audio controls preload="none" data-media="{key}" aria-label="{esc(label)}"></audio>'

    @property
    def media_bytes(self) -> int:
        return sum(len(d) for _, d in self._media.values())

    # -- output -------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike, body: str) -> ReportFile:
        """Write the document (``body``: the HTML inside ``<body>``, built from this object's tags)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = None
        if self.media_bytes > self.inline_limit:
            folder = path.with_name(path.stem + "_files")
            folder.mkdir(exist_ok=True)
            table = {}
            for key, (mime, data) in self._media.items():
                name = key + EXTENSIONS.get(mime, ".bin")
                (folder / name).write_bytes(data)
                table[key] = f"{folder.name}/{name}"
        else:
            table = {key: f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
                     for key, (mime, data) in self._media.items()}
        parts = [
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            # everything is in this file: forbid any request to the network
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob: file: 'self'; "
            "media-src data: blob: file: 'self'; font-src data:\">",
            f"<title>{esc(self.title)}</title>",
            f"<style>{_CSS}{self.css}</style>",
            f"<script>{self.plotly_js}</script>",
            *(f"<script>{s}</script>" for s in self.scripts),
            "</head><body>",
            body,
            *self._figures,
            f'<script type="application/json" id="wp-media">{script_json(table)}</script>',
            f"<script>{_SCRIPT}</script>",
            "</body></html>\n",
        ]
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")  # two writers never share one
        with open(tmp, "w", encoding="utf-8") as fh:
            for part in parts:
                fh.write(part)
        os.replace(tmp, path)
        return ReportFile(path, path.stat().st_size, self.media_bytes, folder, len(self._figures),
                          self._n_images, self._n_audio)


def _safe_filename(name: str) -> str:
    """A download file name: letters, digits, '-', '_' and '.' only."""
    out = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(name)).strip("-.")
    while "--" in out:
        out = out.replace("--", "-")
    return out[:150] or "whypop"
