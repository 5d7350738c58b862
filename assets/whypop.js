/* whypop dashboard, clientside parts:
 *  - dash_clientside.whypop.highlight: hover a concept in panel 1 or 2 -> its similar concepts
 *    (and its cluster in panel 2) stand out, the rest fade; the selected concept gets a ring.
 *  - dash_clientside.whypop.focusRadar: hover a radar in panel 4 -> the others fade.
 *  - dash_clientside.whypop.seek: click the song's spectrogram -> the audio jumps there.
 *  - a requestAnimationFrame loop moving panel 5's playhead (shapes[0]) with the audio; when the
 *    player's source swaps between the song and a concept's solo / mute of the same song, the
 *    playback position (and playing or not) carries over.
 *  - panel 3: an example's play button plays its solo clip; "play all" plays the examples in
 *    turn, the one playing highlighted (class whypop-playing).
 * Figures mark their traces with `meta` ("concepts", "clusters", "selected", ...); concept points
 * carry their concept id in customdata (see whypop/app/figures.py).
 */
(function () {
  "use strict";
  var BASE = 10, FADED = 0.15, NORMAL = 0.9;

  function noUpdate() { return window.dash_clientside.no_update; }

  function hovered(hoverData, fig) {
    if (!hoverData || !hoverData.points || !hoverData.points.length || !fig || !fig.data) return null;
    var p = hoverData.points[0], tr = fig.data[p.curveNumber];
    if (!tr) return null;
    if (tr.meta === "concepts" && typeof p.customdata === "number") return { concept: p.customdata };
    if (tr.meta === "clusters" && p.customdata && typeof p.customdata.cluster === "number") {
      return { cluster: p.customdata.cluster };
    }
    return null;
  }

  function conceptSets(h, sim) {
    // -> {main: Set of concepts to emphasise in panel 1, map: Set for panel 2, cluster: id or null, hot: concept or null}
    var main = new Set(), map = new Set(), cluster = null, hot = null;
    if (!h) return null;
    var clusterOf = (sim && sim.cluster) || {};
    if (h.concept !== undefined) {
      hot = h.concept;
      main.add(hot);
      ((sim && sim.similar && sim.similar[String(hot)]) || []).forEach(function (c) { main.add(c); });
      cluster = clusterOf[String(hot)];
      cluster = (cluster === undefined) ? null : cluster;
    } else {
      cluster = h.cluster;
    }
    main.forEach(function (c) { map.add(c); });
    if (cluster !== null) {
      Object.keys(clusterOf).forEach(function (c) { if (clusterOf[c] === cluster) { map.add(Number(c)); } });
      if (h.cluster !== undefined) { map.forEach(function (c) { main.add(c); }); }
    }
    return { main: main, map: map, cluster: cluster, hot: hot };
  }

  function restyle(fig, emph, sets, selected) {
    var P = new window.dash_clientside.Patch();
    var sel = null;
    // the figure's own marker sizes (shrunk to fit at scale), else the defaults
    var meta = (fig.layout && fig.layout.meta) || {};
    var base = meta.marker_size || BASE, hub = meta.cluster_size || 22;
    fig.data.forEach(function (tr, i) {
      if (tr.meta === "concepts") {
        var ids = tr.customdata || [];
        P.assign(["data", i, "marker", "opacity"], ids.map(function (c) {
          return !sets ? NORMAL : (emph.has(c) ? 1 : FADED);
        }));
        P.assign(["data", i, "marker", "size"], ids.map(function (c) {
          if (!sets) return base;
          return c === sets.hot ? base + 6 : (emph.has(c) ? base + 3 : base);
        }));
        ids.forEach(function (c, j) { if (c === selected) { sel = [tr.x[j], tr.y[j]]; } });
      } else if (tr.meta === "clusters") {
        var ks = (tr.customdata || []).map(function (d) { return d && d.cluster; });
        P.assign(["data", i, "marker", "opacity"], ks.map(function (k) {
          return !sets || sets.cluster === null ? 1 : (k === sets.cluster ? 1 : 0.3);
        }));
        P.assign(["data", i, "marker", "size"], ks.map(function (k) {
          return sets && k === sets.cluster ? Math.round(hub * 1.6) : hub;
        }));
      }
    });
    fig.data.forEach(function (tr, i) {
      if (tr.meta === "selected") {
        P.assign(["data", i, "x"], sel ? [sel[0]] : []);
        P.assign(["data", i, "y"], sel ? [sel[1]] : []);
      }
    });
    return P.build();
  }

  function focusRadar(hoverData, fig) {
    if (!fig || !fig.data) return noUpdate();
    var track = null;
    if (hoverData && hoverData.points && hoverData.points.length) {
      var tr = fig.data[hoverData.points[0].curveNumber];
      track = tr ? tr.meta : null;
    }
    var P = new window.dash_clientside.Patch();
    fig.data.forEach(function (tr, i) {
      P.assign(["data", i, "opacity"], track === null || tr.meta === track ? 1 : 0.2);
    });
    return P.build();
  }

  function seek(clickData) {
    var audio = document.querySelector("audio.whypop-audio");
    if (audio && clickData && clickData.points && clickData.points.length) {
      var t = Number(clickData.points[0].x);
      if (isFinite(t)) {
        audio.currentTime = Math.max(0, t);
        var played = audio.play();
        if (played && played.catch) { played.catch(function () { /* autoplay refused: the user presses play */ }); }
      }
    }
    return noUpdate();
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    whypop: {
      highlight: function (hover1, hover2, selected, sim, fig1, fig2) {
        if (!fig1 || !fig2 || !fig1.data || !fig2.data) return [noUpdate(), noUpdate()];
        var h = hovered(hover1, fig1) || hovered(hover2, fig2);
        var sets = conceptSets(h, sim);
        var sel = (typeof selected === "number") ? selected : null;
        return [
          restyle(fig1, sets ? sets.main : null, sets, sel),
          restyle(fig2, sets ? sets.map : null, sets, sel),
        ];
      },
      focusRadar: focusRadar,
      seek: seek,
    },
  });

  // -- playhead: follows the audio element smoothly, without any server round trip ---------------
  // Each frame moves the playhead's SVG path (shapes[0]) directly and records the time in the
  // figure's layout. Plotly.relayout per frame cost 25-160 ms on a busy 2-core machine (about
  // 9 frames/s) and made dcc.Graph report relayoutData every frame; a real relayout is done only
  // when playback pauses, seeks or ends, so Plotly's own state stays right.
  function playhead(gd) {
    var s = gd && gd.layout && gd.layout.shapes;
    return s && s.length && s[0].name === "playhead" ? s[0] : null;
  }

  function moveFast(gd, t) {
    var xa = gd._fullLayout && gd._fullLayout.xaxis;
    var path = gd.querySelector('.shapelayer .shape-group[data-index="0"] path');
    var m = path && /^M([^,]+),([^L]+)L([^,]+),(.+)$/.exec(path.getAttribute("d") || "");
    if (!xa || !m || typeof xa.l2p !== "function") { return false; }
    var px = xa._offset + xa.l2p(t);
    path.setAttribute("d", "M" + px + "," + m[2] + "L" + px + "," + m[4]);
    var shape = playhead(gd);
    shape.x0 = shape.x1 = t;
    var full = gd._fullLayout.shapes && gd._fullLayout.shapes[0];
    if (full) { full.x0 = full.x1 = t; }
    return true;
  }

  function clampTime(gd, audio) {
    var t = audio.currentTime || 0;
    var range = gd.layout.xaxis && gd.layout.xaxis.range;
    return range && t > range[1] ? range[1] : t;
  }

  function settle(audio) {
    var gd = document.querySelector(".whypop-song-graph .js-plotly-plot");
    if (!gd || !playhead(gd) || !window.Plotly) { return; }
    var t = clampTime(gd, audio);
    window.Plotly.relayout(gd, { "shapes[0].x0": t, "shapes[0].x1": t });
  }

  // -- panel 5: the source swaps between the song and a concept's solo / mute: keep the position --
  var lastSrc = null, lastTime = 0, lastPlaying = false;
  function trackOf(src) {
    // audio/<track> or listen/<extraction>/<concept>/song/<track>/<mode>.wav -> the track id;
    // upload/<sha256>/audio or listen/<extraction>/<concept>/upload/<sha256>/<mode>.wav -> "upload:<sha256>"
    var parts = (src || "").split("?")[0].split("/");
    var u = parts.lastIndexOf("upload");
    if (u >= 0 && u + 1 < parts.length) { return "upload:" + parts[u + 1]; }
    var i = parts.lastIndexOf("song");
    if (parts.indexOf("listen") >= 0 && i >= 0 && i + 1 < parts.length) { return parts[i + 1]; }
    return parts.indexOf("audio") >= 0 ? parts[parts.length - 1] : null;
  }
  function follow(audio) {
    var src = audio.getAttribute("src");
    if (src !== lastSrc) {
      if (lastSrc && src && trackOf(src) !== null && trackOf(src) === trackOf(lastSrc)) {
        var t = lastTime, playing = lastPlaying;
        audio.addEventListener("loadedmetadata", function () {
          audio.currentTime = isFinite(audio.duration) ? Math.min(t, audio.duration) : t;
          if (playing) {
            var p = audio.play();
            if (p && p.catch) { p.catch(function () { /* autoplay refused: the user presses play */ }); }
          }
        }, { once: true });
      }
      lastSrc = src;
      return;
    }
    if (!audio.seeking && audio.readyState > 0) { lastTime = audio.currentTime; lastPlaying = !audio.paused; }
  }

  // -- panel 3: play one example, or all of them in turn ------------------------------------------
  var queue = null, current = null;
  function exampleAudio() { return document.querySelector("audio.whypop-example-audio"); }
  function playAllButton(on) {
    var b = document.querySelector(".whypop-play-all");
    if (b) { b.textContent = on ? "■ stop" : "▶ play all"; b.classList.toggle("active", !!on); }
  }
  function mark(btn) {
    document.querySelectorAll(".whypop-example.whypop-playing").forEach(function (el) { el.classList.remove("whypop-playing"); });
    document.querySelectorAll(".whypop-play.active").forEach(function (el) { el.classList.remove("active"); el.textContent = "▶"; });
    current = btn;
    if (btn) {
      var ex = btn.closest(".whypop-example");
      if (ex) { ex.classList.add("whypop-playing"); }
      btn.classList.add("active");
      btn.textContent = "❚❚";
    }
  }
  function stopExamples() {
    var audio = exampleAudio();
    if (audio && !audio.paused) { audio.pause(); }
    queue = null;
    mark(null);
    playAllButton(false);
  }
  function playExample(btn) {
    var audio = exampleAudio();
    if (!audio || !btn) { return; }
    var src = btn.getAttribute("data-src");
    mark(btn);
    if (audio.getAttribute("src") !== src) { audio.setAttribute("src", src); } else { audio.currentTime = 0; }
    var p = audio.play();
    if (p && p.catch) { p.catch(function () { if (current === btn) { stopExamples(); } }); }
  }
  function nextExample() {
    while (queue && queue.length) {
      var btn = queue.shift();
      if (btn.isConnected) { playExample(btn); return; }
    }
    stopExamples();
  }
  document.addEventListener("click", function (ev) {
    var target = ev.target && ev.target.closest ? ev.target : null;
    if (!target) { return; }
    var btn = target.closest(".whypop-play");
    if (btn) {
      ev.preventDefault();
      var audio = exampleAudio();
      if (current === btn && audio && !audio.paused) { stopExamples(); return; }
      queue = null;
      playAllButton(false);
      playExample(btn);
      return;
    }
    if (target.closest(".whypop-play-all")) {
      ev.preventDefault();
      if (queue) { stopExamples(); return; }
      queue = Array.prototype.slice.call(document.querySelectorAll(".whypop-gallery .whypop-play"));
      if (!queue.length) { queue = null; return; }
      playAllButton(true);
      nextExample();
    }
  });
  document.addEventListener("ended", function (ev) {  // media events do not bubble: caught on the way down
    if (ev.target === exampleAudio() && current) { if (queue) { nextExample(); } else { stopExamples(); } }
  }, true);

  var hooked = null;
  function tick() {
    var audio = document.querySelector("audio.whypop-audio");
    var gd = document.querySelector(".whypop-song-graph .js-plotly-plot");
    if (audio && audio !== hooked) {
      ["pause", "seeked", "ended"].forEach(function (ev) { audio.addEventListener(ev, function () { settle(audio); }); });
      hooked = audio;
    }
    if (audio) { follow(audio); }
    if (current && !current.isConnected) { stopExamples(); }  // the gallery changed under the playing example
    var shape = playhead(gd);
    if (audio && shape && window.Plotly) {
      var t = clampTime(gd, audio);
      if (shape.x0 !== t && !moveFast(gd, t)) {
        window.Plotly.relayout(gd, { "shapes[0].x0": t, "shapes[0].x1": t });
      }
    }
    window.requestAnimationFrame(tick);
  }
  window.requestAnimationFrame(tick);

  // -- song upload (panel 5): the file goes to a plain POST route as the raw body, streamed; ---------
  // only the answer ({id, name} or {error}) reaches Dash, through the upload store.
  var UPLOAD_STORE = { whypop: "song", part: "upload" };
  function tell(data) {
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(UPLOAD_STORE, { data: data });
    }
  }
  function upload(button, file) {
    var url = button.getAttribute("data-url"), max = Number(button.getAttribute("data-max") || 0);
    var stamp = Date.now();
    if (max && file.size > max) {
      tell({ error: file.name + " is " + (file.size / 1e6).toFixed(1) + " MB; the limit is " +
             (max / 1048576).toFixed(0) + " MB", t: stamp });
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = function (ev) {
      if (ev.lengthComputable) {
        tell({ pending: true, name: file.name, percent: Math.round(100 * ev.loaded / ev.total), t: Date.now() });
      }
    };
    xhr.onload = function () {
      var answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
      if (!answer) { answer = { error: "the server answered " + xhr.status + " " + (xhr.statusText || "") }; }
      answer.t = Date.now();
      tell(answer);
    };
    xhr.onerror = function () { tell({ error: "the upload did not reach the server", t: Date.now() }); };
    xhr.send(file);
  }
  document.addEventListener("click", function (ev) {
    var button = ev.target && ev.target.closest && ev.target.closest(".whypop-upload-button");
    if (!button) { return; }
    ev.preventDefault();
    var input = document.createElement("input");
    input.type = "file";
    input.accept = ".mp3,.ogg,.flac,.wav,audio/mpeg,audio/ogg,audio/flac,audio/wav";
    input.className = "whypop-upload-input";
    input.style.display = "none";
    input.addEventListener("change", function () {
      if (input.files && input.files.length) { upload(button, input.files[0]); }
      input.remove();
    });
    document.body.appendChild(input);
    input.click();
  });
})();
