/* whypop figure export: the Plotly toolbar's PNG and SVG downloads, in the dashboard and in reports.
 *
 * whypopExportConfig(config) adds an "SVG" button beside Plotly's PNG camera whenever a figure's
 * config asks for one (toImageButtonOptions set); both downloads use its file name. The
 * dashboard's dcc.Graph calls Plotly.react(gd, {data, layout, config}): wrapping Plotly.react
 * adds the button there (Python config cannot carry a JavaScript click handler); the HTML report
 * calls whypopExportConfig itself.
 */
(function () {
  "use strict";
  var SVG_ICON = {
    width: 1000, height: 1000,
    // a picture frame (outer square, inner square wound the other way) holding a mountain: "vector image"
    path: "M100 100h800v800h-800z M170 170v660h660v-660z M230 230l190 330 130-170 220 240v-400z",
    transform: "matrix(1 0 0 -1 0 1000)"
  };

  function svgButton() {
    return {
      name: "whypopSvg", title: "Download plot as SVG", icon: SVG_ICON,
      click: function (gd) {
        var opts = (gd._context && gd._context.toImageButtonOptions) || {};
        window.Plotly.downloadImage(gd, {format: "svg", filename: opts.filename || "whypop",
                                         width: opts.width, height: opts.height});
      }
    };
  }

  function whypopExportConfig(config) {
    if (!config || !config.toImageButtonOptions) return config;
    var out = Object.assign({}, config);
    var groups = (config.modeBarButtons || [["toImage"]]).map(function (g) { return g.slice(); });
    var has = groups.some(function (g) { return g.some(function (b) { return b && b.name === "whypopSvg"; }); });
    if (!has) groups[groups.length - 1].push(svgButton());
    out.modeBarButtons = groups;
    return out;
  }
  window.whypopExportConfig = whypopExportConfig;

  var P = window.Plotly;
  if (P && P.react && !P.react.whypopWrapped) {
    var react = P.react;
    P.react = function (gd, data, layout, config) {
      if (data && !Array.isArray(data) && typeof data === "object" && data.config) {
        data = Object.assign({}, data, {config: whypopExportConfig(data.config)});
      } else if (config) {
        config = whypopExportConfig(config);
      }
      return react.call(this, gd, data, layout, config);
    };
    P.react.whypopWrapped = true;
  }
})();
