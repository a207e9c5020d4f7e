"""The report page in a real headless browser (Debian's chromium): load it with a probe injected first in
<head> that collects page errors and image sizes, or take a screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push('error: ' + (e.message || (e.target && e.target.src || '').slice(0, 60))), true);
const origError = console.error;
console.error = (...a) => { window.__errors.push('console.error: ' + a.join(' ')); origError(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  const out = document.createElement('pre');
  out.id = '__check';
  out.textContent = JSON.stringify({images: imgs.length, broken: broken,
    widths: imgs.map(i => i.naturalWidth), errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


def check_page(page: Path, tmp_path: Path) -> dict:
    """Load ``page`` in headless chromium with an error/image probe injected first in <head>; return what the
    probe saw: image count, broken images, their natural widths, page errors."""
    html = page.read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("<head>", "<head>" + CHECK_SCRIPT, 1))
    proc = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    m = re.search(r'<pre id="__check">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-3000:]
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
