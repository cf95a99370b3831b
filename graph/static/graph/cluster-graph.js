// The cluster page's interactive graph, drawn with the vendored cytoscape.js from the JSON that
// graph/network.py builds and the page embeds (#cluster-graph-data). A file, not inline script: the page's
// CSP allows script from 'self' only. Without JavaScript the server's SVG picture stays in its place.
(function () {
  "use strict";

  const BRIDGE = "#c0392b";
  const CHAIN = "#e67e22";
  const SUPPRESSION = { common: "suppressed: marked common", threshold: "suppressed: over its kind's limit" };

  function start() {
    const source = document.getElementById("cluster-graph-data");
    const wrapper = document.getElementById("cluster-graph");
    const fallback = document.getElementById("cluster-picture-fallback");
    if (!source || !wrapper || typeof window.cytoscape !== "function") {
      return; // the SVG picture stays
    }
    const data = JSON.parse(source.textContent);
    // Shown before cytoscape starts: it measures its container.
    wrapper.hidden = false;
    if (fallback) {
      fallback.hidden = true;
    }
    const cy = window.cytoscape({
      container: document.getElementById("graph-canvas"),
      elements: elements(data),
      style: style(),
      layout: { name: "preset" },
      minZoom: 0.05,
      maxZoom: 4,
      wheelSensitivity: 0.4,
      boxSelectionEnabled: false,
      // Large clusters stay smooth while panning and zooming (edges come back when the view rests).
      hideEdgesOnViewport: data.nodes.length > 300,
    });
    window.exchangeGraph = cy; // for the browser tests (tests/system/test_admin_browser.py) and the console

    const started = performance.now();
    const layout = cy.layout(layoutOptions(data.nodes.length));
    layout.one("layoutstop", function () {
      capZoom(cy);
      highlightChain(cy, data);
      wrapper.dataset.layoutMs = String(Math.round(performance.now() - started)); // measured by the tests
      wrapper.dataset.ready = "true";
    });
    layout.run();

    tools(cy, data, document.getElementById("graph-tools"));
    tooltips(cy, wrapper);
    clicks(cy);
  }

  // A handful of nodes would otherwise be blown up to fill the box.
  function capZoom(cy) {
    if (cy.zoom() > 1.5) {
      cy.zoom(1.5);
      cy.center();
    }
  }

  function elements(data) {
    // Start on a circle in the page's order, then let the force layout settle without randomness: the same
    // cluster opens looking the same.
    const count = data.nodes.length;
    const radius = 40 * Math.sqrt(count + 1);
    const nodes = data.nodes.map(function (node, n) {
      const angle = (2 * Math.PI * n) / Math.max(count, 1);
      return {
        group: "nodes",
        data: node,
        position: { x: radius * Math.cos(angle), y: radius * Math.sin(angle) },
      };
    });
    const edges = data.edges.map(function (edge) {
      return { group: "edges", data: edge };
    });
    return nodes.concat(edges);
  }

  function layoutOptions(count) {
    return {
      name: "cose",
      randomize: false,
      animate: false,
      fit: true,
      padding: 30,
      nodeDimensionsIncludeLabels: count <= 150,
      idealEdgeLength: function () {
        return count > 150 ? 40 : 70;
      },
      nodeRepulsion: function () {
        return count > 150 ? 6000 : 12000;
      },
      gravity: 0.5,
      // Fewer rounds for large clusters keep the page responsive (the test budgets a few seconds at 500).
      numIter: count > 300 ? 300 : 1000,
      coolingFactor: count > 300 ? 0.95 : 0.99,
    };
  }

  function style() {
    return [
      {
        selector: "node",
        style: {
          label: "data(label)",
          "font-size": 10,
          "text-valign": "bottom",
          "text-margin-y": 3,
          color: "#333",
          "text-outline-color": "#fff",
          "text-outline-width": 2,
          // Labels disappear when zoomed out too far to read them, and come back on zooming in.
          "min-zoomed-font-size": 7,
          "background-color": "data(colour)",
        },
      },
      {
        selector: 'node[type = "seller"]',
        style: { shape: "ellipse", width: 22, height: 22, "border-width": 2, "border-color": "#fff" },
      },
      {
        selector: 'node[type = "indicator"]',
        style: { width: 18, height: 18, "border-width": 1, "border-color": "#333", "font-size": 9, color: "#555" },
      },
      { selector: 'node[strength = "strong"]', style: { shape: "diamond", width: 22, height: 22 } },
      { selector: 'node[strength = "weak"]', style: { shape: "round-rectangle" } },
      { selector: "node[?bridge]", style: { "border-width": 3, "border-color": BRIDGE } },
      {
        selector: 'node[suppressed != ""][type = "indicator"]',
        style: { "border-style": "dashed", "border-width": 2, "border-color": "#555", "background-opacity": 0.45 },
      },
      {
        selector: "edge",
        style: { width: 1.3, "line-color": "#9a9a9a", "curve-style": "straight", opacity: 0.8 },
      },
      {
        selector: 'node[type = "cluster"]',
        style: {
          shape: "barrel",
          width: 34,
          height: 24,
          "background-color": "#fff",
          "border-width": 2,
          "border-style": "dashed",
          "border-color": "#666",
        },
      },
      { selector: "edge[?suppressed]", style: { "line-style": "dashed", "line-dash-pattern": [5, 4] } },
      { selector: ".faded", style: { opacity: 0.25 } },
      {
        selector: "node.chain",
        style: { "underlay-color": CHAIN, "underlay-opacity": 0.45, "underlay-padding": 6, opacity: 1 },
      },
      { selector: "edge.chain", style: { width: 4, "line-color": CHAIN, opacity: 1 } },
      { selector: "node.picked", style: { "border-width": 4, "border-color": CHAIN } },
      { selector: ".filtered", style: { display: "none" } },
    ];
  }

  function highlightChain(cy, data) {
    const ids = data.chain.nodes.concat(data.chain.edges);
    if (ids.length === 0) {
      return;
    }
    const chain = cy.collection(ids.map(function (id) { return cy.getElementById(id); }));
    chain.addClass("chain");
    // The rest steps back only for a pair the viewer chose; the page's default pair is just marked.
    if (data.focus) {
      cy.elements().not(chain).addClass("faded");
    }
    data.pair.forEach(function (id) { cy.getElementById(id).addClass("picked"); });
  }

  // --- filters and legend ------------------------------------------------------------------------------

  function tools(cy, data, box) {
    const shown = { strong: true, weak: true, suppressed: true };
    const kinds = {};
    const dates = Array.from(new Set(cy.nodes('[type = "indicator"]').map(function (node) { return node.data("seen"); })))
      .filter(Boolean)
      .sort();
    let until = dates.length ? dates[dates.length - 1] : "";
    function apply() {
      cy.batch(function () {
        cy.nodes('[type = "indicator"]').forEach(function (node) {
          const visible =
            shown[node.data("strength")] &&
            kinds[node.data("kind")] !== false && // a kind only expansion brought in has no checkbox
            (shown.suppressed || !node.data("suppressed")) &&
            (!node.data("seen") || node.data("seen") <= until);
          node.toggleClass("filtered", !visible);
        });
      });
    }
    function checkbox(name, text, swatch, onChange) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.checked = true;
      input.name = name;
      input.addEventListener("change", function () {
        onChange(input.checked);
        apply();
      });
      label.appendChild(input);
      if (swatch) {
        label.appendChild(swatch);
      }
      label.appendChild(document.createTextNode(text));
      return label;
    }
    function heading(text) {
      const strong = document.createElement("strong");
      strong.textContent = text;
      return strong;
    }
    function swatch(colour, seller) {
      const span = document.createElement("span");
      span.className = seller ? "swatch seller" : "swatch";
      span.style.background = colour;
      return span;
    }

    box.appendChild(heading("Sellers:"));
    data.platforms.forEach(function (platform) {
      const label = document.createElement("label");
      label.appendChild(swatch(platform.colour, true));
      label.appendChild(document.createTextNode(platform.label));
      box.appendChild(label);
    });
    box.appendChild(heading("Indicators:"));
    data.kinds.forEach(function (kind) {
      kinds[kind.kind] = true;
      box.appendChild(
        checkbox("kind-" + kind.kind, kind.label, swatch(kind.colour, false), function (on) {
          kinds[kind.kind] = on;
        })
      );
    });
    box.appendChild(heading("Show:"));
    ["strong", "weak", "suppressed"].forEach(function (name) {
      box.appendChild(
        checkbox("show-" + name, name, null, function (on) {
          shown[name] = on;
        })
      );
    });
    if (dates.length > 1) {
      box.appendChild(timeSlider(dates, function (date) {
        until = date;
        apply();
      }));
    }
    const neighbours = data.neighbours;
    if (neighbours && neighbours.nodes.some(function (node) { return node.type === "cluster"; })) {
      box.appendChild(heading("Expand:"));
      let added = null;
      box.appendChild(
        checkbox("expand-neighbours", "neighbouring clusters through suppressed indicators", null, function (on) {
          if (on) {
            added = expand(cy, neighbours);
          } else if (added) {
            cy.remove(added);
            added = null;
          }
        })
      );
      box.lastChild.querySelector("input").checked = false; // off until asked for
    }
  }

  // Exchange analysts: what the hub rule cut. The other clusters sharing a suppressed indicator join as dashed
  // nodes around it, laid out again from where everything stands.
  function expand(cy, neighbours) {
    const more = neighbours.more;
    const added = cy.add(
      neighbours.nodes
        .map(function (node) {
          return { group: "nodes", data: Object.assign({}, node, { more: more[node.id] || 0 }) };
        })
        .concat(neighbours.edges.map(function (edge) { return { group: "edges", data: edge }; }))
    );
    Object.keys(more).forEach(function (id) { cy.getElementById(id).data("more", more[id]); });
    // New nodes start beside a neighbour already placed, so the layout only has to settle them.
    added.nodes().forEach(function (node, n) {
      const placed = node.neighborhood("node").not(added).first();
      const from = placed.nonempty() ? placed.position() : { x: 0, y: 0 };
      node.position({ x: from.x + 40 * Math.cos(n), y: from.y + 40 * Math.sin(n) });
    });
    const layout = cy.layout(layoutOptions(cy.nodes().length));
    layout.one("layoutstop", function () { capZoom(cy); }); // re-framed so the new nodes are in view
    layout.run();
    return added;
  }

  // The evidence as it stood on a date: indicators first seen later step out (sellers stay).
  function timeSlider(dates, onChange) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    const shows = document.createElement("output");
    input.type = "range";
    input.name = "seen-until";
    input.min = "0";
    input.max = String(dates.length - 1);
    input.value = input.max;
    shows.id = "seen-until";
    shows.textContent = dates[dates.length - 1];
    input.addEventListener("input", function () {
      const date = dates[Number(input.value)];
      shows.textContent = date;
      onChange(date);
    });
    label.appendChild(document.createTextNode("First seen by"));
    label.appendChild(input);
    label.appendChild(shows);
    return label;
  }

  // --- hover: the evidence of a node or an edge -------------------------------------------------------

  function tooltips(cy, wrapper) {
    const tip = document.createElement("div");
    tip.className = "graph-tip";
    tip.hidden = true;
    tip.id = "graph-tip";
    wrapper.appendChild(tip);
    const canvas = document.getElementById("graph-canvas");

    cy.on("mouseover", "node, edge", function (event) {
      tip.textContent = describe(event.target, cy); // text only: nothing in the data is ever parsed as HTML
      const offset = canvas.offsetTop;
      tip.style.left = event.renderedPosition.x + 14 + "px";
      tip.style.top = event.renderedPosition.y + offset + 14 + "px";
      tip.hidden = false;
    });
    cy.on("mouseout", "node, edge", function () {
      tip.hidden = true;
    });
    cy.on("viewport drag", function () {
      tip.hidden = true;
    });
  }

  function describe(element, cy) {
    const d = element.data();
    if (element.isEdge() && cy.getElementById(d.target).data("type") === "cluster") {
      return d.sellers + " seller" + (d.sellers === 1 ? "" : "s") + " of " + cy.getElementById(d.target).data("label") +
        " hold this suppressed indicator: it does not link";
    }
    if (element.isEdge()) {
      const seller = cy.getElementById(d.source).data();
      const indicator = cy.getElementById(d.target).data();
      return [
        seller.alias + " holds " + indicator.label + " (" + indicator.strength + ")",
        d.suppressed ? SUPPRESSION[indicator.suppressed] + ": it does not link" : "first seen " + (indicator.firstSeen || "?"),
      ].join("\n");
    }
    if (d.type === "cluster") {
      return [
        d.label + ": " + d.size + " seller" + (d.size === 1 ? "" : "s"),
        "shares a suppressed indicator with this cluster: the hub rule keeps them apart",
        "click to open",
      ].join("\n");
    }
    if (d.type === "seller") {
      const lines = [d.alias, d.platform];
      if (d.status) {
        lines.push(d.status + ", first reported " + d.firstReported);
      }
      lines.push("holds " + element.degree() + " of the indicators drawn");
      lines.push(d.url ? "click to open; shift-click two sellers to explain their link" : "shift-click two sellers to explain their link");
      return lines.join("\n");
    }
    const lines = [d.label + " (" + d.strength + ")" + (d.bridge ? ", a bridge: removing it splits the cluster" : "")];
    lines.push("held by " + d.sellers + " seller" + (d.sellers === 1 ? "" : "s") + " on " + d.platforms + " platform" + (d.platforms === 1 ? "" : "s") + " here");
    if (d.holders !== null && d.holders !== undefined) {
      lines.push(d.holders + " seller" + (d.holders === 1 ? "" : "s") + " exchange-wide");
    }
    lines.push("first seen " + (d.firstSeen || "?"));
    lines.push(d.suppressed ? SUPPRESSION[d.suppressed] : "links " + d.links + " member pair" + (d.links === 1 ? "" : "s"));
    if (d.token) {
      lines.push("token " + d.token + "…");
    }
    if (d.more) {
      lines.push(d.more + " more neighbouring cluster" + (d.more === 1 ? "" : "s") + " not drawn");
    }
    return lines.join("\n");
  }

  // --- clicks: open a seller, or pick two to explain ---------------------------------------------------

  function clicks(cy) {
    const form = document.querySelector("form.chain-form");
    let picked = [];
    cy.on("tap", "node", function (event) {
      const node = event.target;
      const shift = event.originalEvent && event.originalEvent.shiftKey;
      if (shift && node.data("type") === "seller" && form) {
        picked = picked.filter(function (other) { return other.id() !== node.id(); }).concat([node]).slice(-2);
        cy.nodes(".picked").removeClass("picked");
        picked.forEach(function (other) { other.addClass("picked"); });
        if (picked.length === 2) {
          // The server works out the chain (one link rule, in graph/evidence.py); the page comes back here.
          form.elements.a.value = String(picked[0].data("position"));
          form.elements.b.value = String(picked[1].data("position"));
          form.setAttribute("action", "#picture");
          form.submit();
        }
        return;
      }
      if (!shift && node.data("url")) {
        window.location.assign(node.data("url"));
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
