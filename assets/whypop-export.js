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
    path: "M100 100h800v800h-800z M180 620l200-260 160 200 110-130 170 190z",
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
