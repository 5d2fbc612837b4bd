#!/usr/bin/env bash
# Opens a report's index.html in headless Chromium and checks that every
# plot renders: each <figure data-plot> holds an <svg> whose drawing has a
# size and whose text (axis labels, legend) is laid out; every link of the
# contents leads to a heading; a click on the p50 heading of the table of
# every point sorts it by value and a second reverses it; its filter box
# hides the rows that do not match. Also saves a screenshot of the page
# beside the report (screenshot.png).
#
#   scripts/check-report-html.sh reports/<run>/index.html
#
# Needs Debian's chromium (apt-get install chromium); not run by CI.
set -euo pipefail

page=${1:?usage: $0 path/to/index.html}
[ -f "$page" ] || { echo "no such file: $page" >&2; exit 1; }
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "chromium not found: apt-get install chromium" >&2; exit 1; }

page=$(realpath "$page")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A wrapper page loads the report in a frame and writes what it finds into
# its own DOM, which --dump-dom prints once scripts have run.
cat > "$work/check.html" <<HTML
<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="f" src="file://$page" style="width:1200px;height:900px"></iframe>
<script>
document.getElementById('f').addEventListener('load', () => {
  const lines = [];
  let doc;
  try { doc = document.getElementById('f').contentDocument; }
  catch (e) { lines.push('FAIL cannot read the page: ' + e); }
  if (doc) {
    const figs = doc.querySelectorAll('figure[data-plot]');
    if (figs.length === 0) lines.push('FAIL no plots on the page');
    figs.forEach(f => {
      const name = f.dataset.plot;
      const svg = f.querySelector('svg');
      if (!svg) { lines.push('FAIL ' + name + ': no svg'); return; }
      const box = svg.getBBox();
      const texts = [...svg.querySelectorAll('text')];
      const laidOut = texts.filter(t => t.getComputedTextLength() > 0).length;
      const shapes = svg.querySelectorAll('polyline, circle, rect, polygon, path').length;
      const ok = box.width > 100 && box.height > 100 && laidOut > 3 && shapes > 3;
      lines.push((ok ? 'ok   ' : 'FAIL ') + name + ': ' + Math.round(box.width) + 'x' +
                 Math.round(box.height) + ' px, ' + laidOut + '/' + texts.length +
                 ' texts laid out, ' + shapes + ' shapes');
    });
    const tables = doc.querySelectorAll('table').length;
    lines.push((tables > 0 ? 'ok   ' : 'FAIL ') + tables + ' tables');
    // The contents: every link leads to a heading on the page.
    const links = [...doc.querySelectorAll('nav#contents a')];
    const dead = links.filter(a => !doc.getElementById(a.getAttribute('href').slice(1)));
    lines.push((links.length > 2 && dead.length === 0 ? 'ok   ' : 'FAIL ') + 'contents: ' +
               links.length + ' links, ' + dead.length + ' leading nowhere');
    // The table of every point: a click on its p50 heading sorts it by
    // value (µs after ns, ms after µs), a second click reverses it, and
    // its filter box hides the rows that do not match.
    const rowsOf = t => t.tBodies[0] ? t.tBodies[0].rows.length : 0;
    // The table under "All points" (a bench run's criterion table can be
    // as long), else the longest.
    let big = null;
    for (let e = doc.getElementById('all-points'); e && (e = e.nextElementSibling) && e.tagName !== 'H2';) {
      if (e.tagName === 'TABLE') { big = e; break; }
    }
    big = big || [...doc.querySelectorAll('table')].reduce((a, t) => (!a || rowsOf(t) > rowsOf(a) ? t : a), null);
    if (!big || rowsOf(big) < 20) {
      lines.push('FAIL no table of 20 rows or more');
    } else {
      const heads = [...big.querySelectorAll('thead th')];
      const col = heads.findIndex(h => h.textContent.trim().startsWith('p50'));
      const unit = {ns: 1e-9, 'µs': 1e-6, ms: 1e-3, s: 1};
      const val = t => { const m = t.trim().match(/^([\d.]+)\s*(ns|µs|ms|s)$/); return m ? parseFloat(m[1]) * unit[m[2]] : null; };
      const column = () => [...big.tBodies[0].rows].map(r => val(r.cells[col].textContent)).filter(v => v !== null);
      const sorted = (v, up) => v.every((x, i) => i === 0 || (up ? v[i - 1] <= x : v[i - 1] >= x));
      if (col < 0) {
        lines.push('FAIL the big table has no p50 column');
      } else {
        heads[col].click();
        const up = column();
        heads[col].click();
        const down = column();
        const ok = up.length >= 20 && sorted(up, true) && sorted(down, false);
        lines.push((ok ? 'ok   ' : 'FAIL ') + 'a click sorts ' + up.length + ' rows by p50 (' +
                   (up.length ? up[0] + ' s first' : 'none') + '), a second reverses them');
      }
      const box = big.previousElementSibling;
      if (!box || box.tagName !== 'INPUT') {
        lines.push('FAIL no filter box above the big table');
      } else {
        const first = big.tBodies[0].rows[0].cells[0].textContent;
        box.value = first;
        box.dispatchEvent(new Event('input'));
        const shown = [...big.tBodies[0].rows].filter(r => r.style.display !== 'none').length;
        const ok = shown >= 1 && shown < big.tBodies[0].rows.length;
        lines.push((ok ? 'ok   ' : 'FAIL ') + 'filtering by "' + first + '" shows ' + shown +
                   ' of ' + big.tBodies[0].rows.length + ' rows');
      }
    }
  }
  document.getElementById('out').textContent = lines.join('\n') + '\nDONE';
});
</script></body></html>
HTML

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --allow-file-access-from-files --user-data-dir="$work/profile")
out=$("$chromium" "${flags[@]}" --virtual-time-budget=10000 --dump-dom "file://$work/check.html" 2>/dev/null)
result=$(python3 -c '
import html, re, sys
m = re.search(r"<pre id=\"out\">(.*?)</pre>", sys.stdin.read(), re.S)
print(html.unescape(m.group(1)) if m else "FAIL no result from the page")
' <<<"$out")
echo "$result"
"$chromium" "${flags[@]}" --window-size=1200,3000 --hide-scrollbars \
    --screenshot="$(dirname "$page")/screenshot.png" "file://$page" >/dev/null 2>&1 &&
    echo "screenshot: $(dirname "$page")/screenshot.png"
grep -q DONE <<<"$result" && ! grep -q '^FAIL' <<<"$result"
