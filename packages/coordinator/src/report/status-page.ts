/**
 * The live run page of `mirror --status` (`/`, its script at `/page.js`): hand-written HTML, CSS and
 * JavaScript, kept as strings here so that a bundled meshmirror carries them and the page needs no
 * internet. It follows the run by server-sent events (`/api/events`), falling back to polling
 * `/api/run`, and draws per-agent throughput as inline SVG. Every string from the run reaches the
 * DOM through `textContent`, never as markup. Numbers a test (or a curious person) reads exactly are
 * in `data-value` beside their formatted text.
 */

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meshmirror run</title>
<style>
:root { color-scheme: light dark; --fg: #1d2330; --muted: #667085; --bg: #f4f5f7; --card: #fff; --line: #d9dde3; --accent: #2f6fde; --bad: #c0362c; --good: #1f7a3f; }
@media (prefers-color-scheme: dark) { :root { --fg: #e4e7ec; --muted: #98a2b3; --bg: #101418; --card: #1a1f26; --line: #344054; --accent: #6a9cf5; --bad: #f07167; --good: #5cc287; } }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.75rem; padding: 0.9rem 1.5rem; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 1.15rem; margin: 0; }
h2 { font-size: 0.95rem; margin: 0 0 0.5rem; }
.badge { padding: 0.1rem 0.55rem; border-radius: 999px; background: var(--accent); color: #fff; font-size: 0.8rem; }
.badge.good { background: var(--good); color: #fff; }
.badge.bad { background: var(--bad); color: #fff; }
.muted, .sub { color: var(--muted); }
main { display: grid; gap: 1rem; padding: 1rem 1.5rem; max-width: 1200px; }
.bar { height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; }
.bar > div { height: 100%; width: 0; background: var(--accent); transition: width 0.3s; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 0.75rem; }
.card, section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.7rem 1rem; }
.label { color: var(--muted); font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.04em; }
.value { font-size: 1.35rem; font-variant-numeric: tabular-nums; }
.sub { font-size: 0.85rem; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: 0.8rem; }
.num { text-align: right; }
.bad { color: var(--bad); }
svg { width: 100%; height: auto; display: block; }
svg text { fill: var(--muted); font-size: 11px; }
svg .grid { stroke: var(--line); stroke-width: 1; }
.legend { display: flex; flex-wrap: wrap; gap: 0.4rem 1rem; font-size: 0.85rem; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; border-radius: 2px; margin-right: 0.3rem; vertical-align: -1px; }
#final-failed h2 { margin-top: 1rem; }
footer { color: var(--muted); font-size: 0.8rem; padding: 0 1.5rem 1rem; }
</style>
</head>
<body>
<header>
  <h1>meshmirror run</h1>
  <span id="phase" class="badge">connecting</span>
  <span id="elapsed" class="muted"></span>
</header>
<main>
  <div class="bar" role="progressbar" aria-label="bytes done"><div id="bar"></div></div>
  <div class="cards">
    <div class="card"><div class="label">Bytes done</div><div class="value" id="bytes-done" data-value="0">–</div><div class="sub" id="bytes-sub"></div></div>
    <div class="card"><div class="label">Rate · ETA</div><div class="value" id="rate">–</div><div class="sub" id="eta"></div></div>
    <div class="card"><div class="label">From upstream</div><div class="value" id="upstream-bytes" data-value="0">–</div><div class="sub" id="upstream-sub"></div></div>
    <div class="card"><div class="label">Pieces in flight</div><div class="value" id="pieces-in-flight" data-value="0">–</div><div class="sub" id="pieces-sub"></div></div>
    <div class="card"><div class="label">Images done</div><div class="value"><span id="images-done" data-value="0">–</span> / <span id="images-total" data-value="0">–</span></div><div class="sub"><span id="images-failed" data-value="0">0</span> failed</div></div>
    <div class="card"><div class="label">Retries</div><div class="value" id="retries" data-value="0">0</div><div class="sub" id="retries-sub"></div></div>
  </div>
  <section>
    <h2>Throughput per agent</h2>
    <svg id="chart" viewBox="0 0 720 220" role="img" aria-label="bytes per second per agent over time"></svg>
    <div id="legend" class="legend"></div>
  </section>
  <section>
    <h2>Agents</h2>
    <table>
      <thead><tr><th>agent</th><th>state</th><th class="num">in flight</th><th class="num">fetched</th><th class="num">failed</th><th class="num">wrong</th><th class="num">upstream</th><th class="num">served</th><th class="num">now</th></tr></thead>
      <tbody id="agents"></tbody>
    </table>
  </section>
  <section>
    <h2>Registries</h2>
    <table>
      <thead><tr><th>registry</th><th class="num">upstream</th><th class="num">retries</th></tr></thead>
      <tbody id="registries"></tbody>
    </table>
  </section>
  <section id="final" hidden>
    <h2>Result: <span id="final-mode"></span></h2>
    <div class="cards">
      <div class="card"><div class="label">Images <span id="final-done-label">archived</span></div><div class="value" id="final-images-done" data-value="">–</div><div class="sub">of <span id="final-images-requested" data-value="">–</span> requested</div></div>
      <div class="card"><div class="label">Images failed</div><div class="value" id="final-images-failed" data-value="">–</div></div>
      <div class="card"><div class="label">Unique bytes</div><div class="value" id="final-unique-bytes" data-value="">–</div></div>
      <div class="card"><div class="label">From upstream</div><div class="value" id="final-upstream-bytes" data-value="">–</div><div class="sub" id="final-upstream-share"></div></div>
      <div class="card"><div class="label">Pulled from agents · pushed</div><div class="value" id="final-moved">–</div></div>
      <div class="card"><div class="label">Retries · duration</div><div class="value" id="final-retries" data-value="">–</div><div class="sub" id="final-duration"></div></div>
    </div>
    <div id="final-failed" hidden>
      <h2>Failed images</h2>
      <table>
        <thead><tr><th>image</th><th>code</th><th>reason</th></tr></thead>
        <tbody id="failed-images"></tbody>
      </table>
      <p id="failed-more" class="muted"></p>
    </div>
  </section>
</main>
<footer id="connection">connecting…</footer>
<script src="page.js"></script>
</body>
</html>
`;

// String.raw: the script's regular expressions keep their backslashes.
export const STATUS_PAGE_SCRIPT = String.raw`'use strict';
(function () {
  var COLORS = ['#2f6fde', '#e8833a', '#1f9d55', '#c43d8e', '#7a5af5', '#00a3a3', '#b58900', '#d64545'];
  var SVG = 'http://www.w3.org/2000/svg';
  var ended = false;

  function byId(id) {
    return document.getElementById(id);
  }

  function formatBytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    var v = Math.max(0, Number(n) || 0);
    var i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (i === 0 ? String(Math.round(v)) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + units[i];
  }

  function formatDuration(seconds) {
    if (typeof seconds !== 'number' || !isFinite(seconds)) return '–';
    var s = Math.max(0, Math.round(seconds));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    s = s % 60;
    if (h > 0) return h + 'h' + String(m).padStart(2, '0') + 'm';
    if (m > 0) return m + 'm' + String(s).padStart(2, '0') + 's';
    return s + 's';
  }

  /** Text into an element; with a value, the exact number beside it. */
  function show(id, text, value) {
    var el = byId(id);
    if (el === null) return;
    el.textContent = text;
    if (value !== undefined) el.dataset.value = String(value);
  }

  /** Rows of [text, numeric] cells into a table body. */
  function fillTable(id, rows) {
    var body = byId(id);
    body.replaceChildren.apply(
      body,
      rows.map(function (cells) {
        var tr = document.createElement('tr');
        cells.forEach(function (c) {
          var td = document.createElement('td');
          td.textContent = c[0];
          if (c[1]) td.className = 'num';
          tr.append(td);
        });
        return tr;
      }),
    );
  }

  /** "/ip4/10.0.0.5/tcp/4001/p2p/12D3…" as "10.0.0.5:4001 …abcdefgh"; the coordinator's own agent as "this host". */
  function agentLabel(agent, address) {
    if (address === 'local') return 'this host';
    var m = /^\/(?:ip4|ip6|dns4|dns6|dns)\/([^/]+)\/tcp\/(\d+)/.exec(address || '');
    var where = m === null ? address || agent : m[1] + ':' + m[2];
    return where + ' …' + String(agent).slice(-8);
  }

  function svgNode(name, attributes) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) {
      node.setAttribute(key, String(attributes[key]));
    });
    return node;
  }

  function drawChart(run) {
    var t = run.throughput;
    var labels = {};
    run.agents.forEach(function (a) {
      labels[a.agent] = agentLabel(a.agent, a.address);
    });
    var series =
      t.agents.length > 0
        ? t.agents.map(function (name, i) {
            return { label: labels[name] || name, values: t.points.map(function (p) { return p.agents[i]; }) };
          })
        : [{ label: 'the run', values: t.points.map(function (p) { return p.run; }) }];
    var times = t.points.map(function (p) { return p.t; });
    var W = 720, H = 220, left = 78, right = 12, top = 10, bottom = 24;
    var max = 1;
    series.forEach(function (s) {
      s.values.forEach(function (v) {
        if (v > max) max = v;
      });
    });
    var t0 = times.length > 0 ? times[0] : 0;
    var t1 = times.length > 0 ? times[times.length - 1] : 1;
    var span = Math.max(1, t1 - t0);
    function x(v) { return (left + ((v - t0) / span) * (W - left - right)).toFixed(1); }
    function y(v) { return (top + (1 - v / max) * (H - top - bottom)).toFixed(1); }
    var nodes = [];
    [0, 0.5, 1].forEach(function (f) {
      nodes.push(svgNode('line', { x1: left, x2: W - right, y1: y(max * f), y2: y(max * f), class: 'grid' }));
      var label = svgNode('text', { x: left - 6, y: Number(y(max * f)) + 4, 'text-anchor': 'end' });
      label.textContent = formatBytes(max * f) + '/s';
      nodes.push(label);
    });
    [[t0, 'start'], [t1, 'end']].forEach(function (pair) {
      var label = svgNode('text', { x: x(pair[0]), y: H - 6, 'text-anchor': pair[1] });
      label.textContent = formatDuration(pair[0]);
      nodes.push(label);
    });
    series.forEach(function (s, i) {
      if (times.length < 2) return;
      var points = s.values.map(function (v, j) { return x(times[j]) + ',' + y(v); }).join(' ');
      nodes.push(svgNode('polyline', { points: points, fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 2, 'stroke-linejoin': 'round' }));
    });
    var chart = byId('chart');
    chart.replaceChildren.apply(chart, nodes);
    var legend = byId('legend');
    legend.replaceChildren.apply(
      legend,
      series.map(function (s, i) {
        var item = document.createElement('span');
        var swatch = document.createElement('span');
        swatch.className = 'swatch';
        swatch.style.background = COLORS[i % COLORS.length];
        item.append(swatch, document.createTextNode(s.label));
        return item;
      }),
    );
  }

  function render(run) {
    var result = run.result;
    var pct = run.bytesTotal > 0 ? Math.min(100, (100 * run.bytesDone) / run.bytesTotal) : run.finished ? 100 : 0;
    show('phase', run.finished ? 'finished' : run.phase);
    byId('phase').className = 'badge' + (run.finished ? (run.imagesFailed > 0 ? ' bad' : ' good') : '');
    show('elapsed', 'started ' + new Date(run.startedAt).toLocaleTimeString() + ' · ' + formatDuration(run.elapsedSeconds));
    document.title = 'meshmirror: ' + (run.finished ? 'finished' : run.phase + ' ' + Math.floor(pct) + '%');
    byId('bar').style.width = pct.toFixed(1) + '%';
    show('bytes-done', formatBytes(run.bytesDone), run.bytesDone);
    show('bytes-sub', 'of ' + formatBytes(run.bytesTotal) + (run.bytesTotal > 0 ? ' (' + Math.floor(pct) + '%)' : ''));
    show('rate', formatBytes(run.bytesPerSecond) + '/s');
    show('eta', run.finished ? 'done' : 'ETA ' + formatDuration(run.etaSeconds));
    show('upstream-bytes', formatBytes(run.upstreamBytes), run.upstreamBytes);
    show(
      'upstream-sub',
      result !== undefined
        ? 'against ' + formatBytes(result.bytes.unique) + ' unique'
        : 'of ' + formatBytes(run.bytesTotal) + ' to fetch; ' + formatBytes(run.servedBytes) + ' pulled from agents',
    );
    show('pieces-in-flight', String(run.pieces.inFlight), run.pieces.inFlight);
    show('pieces-sub', run.pieces.fetched + ' fetched, ' + run.pieces.failed + ' failed' + (run.pieces.wrong > 0 ? ', ' + run.pieces.wrong + ' wrong' : ''));
    show('images-done', String(run.imagesDone), run.imagesDone);
    show('images-total', String(run.imagesTotal), run.imagesTotal);
    show('images-failed', String(run.imagesFailed), run.imagesFailed);
    byId('images-failed').className = run.imagesFailed > 0 ? 'bad' : '';
    show('retries', String(run.retries), run.retries);
    show(
      'retries-sub',
      run.retriesByHost
        .slice()
        .sort(function (a, b) { return b.count - a.count; })
        .slice(0, 3)
        .map(function (r) { return r.host + ' ' + r.code + ' ×' + r.count; })
        .join(', '),
    );

    var last = run.throughput.points[run.throughput.points.length - 1];
    fillTable(
      'agents',
      run.agents.map(function (a) {
        var i = run.throughput.agents.indexOf(a.agent);
        var now = last !== undefined && i >= 0 ? formatBytes(last.agents[i]) + '/s' : '–';
        var state = a.distrusted !== undefined ? 'distrusted: ' + a.distrusted : a.lost !== undefined ? 'lost: ' + a.lost : a.readmitted ? 'working (back ' + a.readmitted + '×)' : 'working';
        return [
          [agentLabel(a.agent, a.address)],
          [state],
          [String(a.piecesInFlight), true],
          [String(a.piecesFetched), true],
          [String(a.piecesFailed), true],
          [String(a.wrongPieces), true],
          [formatBytes(a.upstreamBytes), true],
          [formatBytes(a.servedBytes), true],
          [now, true],
        ];
      }),
    );
    var retriesByHost = {};
    run.retriesByHost.forEach(function (r) {
      retriesByHost[r.host] = (retriesByHost[r.host] || 0) + r.count;
    });
    fillTable(
      'registries',
      run.registries.map(function (r) {
        return [[r.registry], [formatBytes(r.upstreamBytes), true], [String(retriesByHost[r.registry] || 0), true]];
      }),
    );
    drawChart(run);

    byId('final').hidden = result === undefined;
    if (result === undefined) return;
    show('final-mode', result.mode);
    show('final-done-label', result.mode === 'mirror to disk' ? 'archived' : 'pushed');
    show('final-images-done', String(result.images.done), result.images.done);
    show('final-images-requested', String(result.images.requested), result.images.requested);
    show('final-images-failed', String(result.images.failed), result.images.failed);
    byId('final-images-failed').className = 'value' + (result.images.failed > 0 ? ' bad' : '');
    show('final-unique-bytes', formatBytes(result.bytes.unique), result.bytes.unique);
    show('final-upstream-bytes', formatBytes(result.bytes.upstream), result.bytes.upstream);
    show('final-upstream-share', result.bytes.unique > 0 ? Math.round((100 * result.bytes.upstream) / result.bytes.unique) + '% of the unique bytes' : '');
    show('final-moved', (result.bytes.pulled === undefined ? '–' : formatBytes(result.bytes.pulled)) + ' · ' + (result.bytes.pushed === undefined ? '–' : formatBytes(result.bytes.pushed)));
    show('final-retries', String(result.retries), result.retries);
    show('final-duration', 'in ' + formatDuration(result.durationMs / 1000) + (result.warnings > 0 ? ', ' + result.warnings + ' warnings' : ''));
    byId('final-failed').hidden = result.failedImages.length === 0;
    fillTable(
      'failed-images',
      result.failedImages.map(function (f) {
        return [[f.source], [f.code || ''], [f.reason || '']];
      }),
    );
    var more = result.images.failed - result.failedImages.length;
    show('failed-more', more > 0 ? 'and ' + more + ' more: see the run report' : '');
  }

  function poll() {
    fetch('api/run', { cache: 'no-store' })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(function (run) {
        render(run);
        ended = run.finished;
        show('connection', run.finished ? 'run over: final figures' : 'live (polling every 2 s)');
        if (!run.finished) setTimeout(poll, 2000);
      })
      .catch(function () {
        show('connection', 'cannot reach the run; trying again');
        setTimeout(poll, 5000);
      });
  }

  function listen() {
    if (typeof EventSource !== 'function') {
      poll();
      return;
    }
    var source = new EventSource('api/events');
    var failures = 0;
    source.addEventListener('run', function (event) {
      failures = 0;
      render(JSON.parse(event.data));
      show('connection', 'live');
    });
    source.addEventListener('end', function (event) {
      ended = true;
      source.close();
      render(JSON.parse(event.data));
      show('connection', 'run over: final figures');
    });
    source.onerror = function () {
      if (ended) return;
      failures += 1;
      show('connection', 'connection lost; trying again');
      // A proxy that does not pass event streams: poll instead.
      if (failures >= 3) {
        source.close();
        poll();
      }
    };
  }

  listen();
})();
`;
