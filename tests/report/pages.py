"""What the report tests read from a page rendered in Chromium, as JavaScript run in it."""

from __future__ import annotations

import json
from typing import Any

from tests.report.chromium import Browser

TABLE = """(() => {
  const head = [...document.querySelectorAll('#table-head th')].map((th) => th.textContent);
  const rows = [...document.querySelectorAll('#table-body tr')].map(
    (tr) => [...tr.children].map((td) => td.textContent));
  return {head, rows, info: document.getElementById('page-info').textContent};
})()"""

OPEN_EVERY_ROW = """(async () => {
  const count = JSON.parse(document.getElementById('report-data').textContent).count;
  const seen = [];
  for (let i = 0; i < count; i++) {
    location.hash = 't=' + i;
    await new Promise((resolve) => {
      const check = () => document.body.dataset.trajectory === String(i)
        ? resolve() : setTimeout(check, 5);
      check();
    });
    const panel = document.getElementById('trajectory');
    seen.push({
      index: i,
      title: panel.querySelector('h2').textContent,
      roles: [...panel.querySelectorAll('.msg')].map((m) => m.dataset.role),
      calls: [...panel.querySelectorAll('.tool-call')].map((c) => ({
        name: c.dataset.tool, arguments: JSON.parse(c.querySelector('.arguments').textContent)})),
      text: panel.textContent,
    });
  }
  return seen;
})()"""


async def open_row(browser: Browser, index: int) -> str:
    """Open row `index` through the address (`#t=<index>`); the trajectory's title."""
    value = await browser.evaluate(f"""(async () => {{
        location.hash = 't={index}';
        await new Promise((resolve) => {{ const check = () =>
            document.body.dataset.trajectory === '{index}' ? resolve() : setTimeout(check, 5);
            check(); }});
        return document.querySelector('#trajectory h2').textContent;
    }})()""")
    assert isinstance(value, str)
    return value


async def table(browser: Browser) -> dict[str, Any]:
    value = await browser.evaluate(TABLE)
    assert isinstance(value, dict)
    return value


async def open_every_row(browser: Browser) -> list[dict[str, Any]]:
    value = await browser.evaluate(OPEN_EVERY_ROW)
    assert isinstance(value, list)
    return value


async def plots(browser: Browser) -> dict[str, dict[str, Any]]:
    """Each chart by name: how many values it draws and how many bars, dots and lines."""
    value = await browser.evaluate("""Object.fromEntries([...document.querySelectorAll(
        'svg.plot')].map((svg) => [svg.dataset.plot, {points: Number(svg.dataset.points),
        marks: svg.querySelectorAll('rect.bar, circle.dot, polyline').length,
        title: svg.querySelector('.plot-title').textContent}]))""")
    assert isinstance(value, dict)
    return value


async def shown_stat(browser: Browser, stat: str, scorer: str) -> str:
    selector = f'[data-stat="{stat}"][data-scorer="{scorer}"]'
    value = await browser.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")
    assert isinstance(value, str)
    return value
