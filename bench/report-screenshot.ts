/**
 * Screenshots a `winnow report` HTML file with headless Chromium, for docs/report-screenshot.png.
 *
 *   node dist/bench/report-screenshot.js report.html docs/report-screenshot.png [--width 1240] [--height 1750]
 *
 * The report has no scripts and no network requests, so the page is ready once loaded.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    width: { type: 'string', default: '1240' },
    height: { type: 'string', default: '1750' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'full-page': { type: 'boolean', default: false },
  },
});
const [html, png] = positionals;
if (!html || !png) {
  console.error('usage: node dist/bench/report-screenshot.js report.html out.png [--width 1240] [--height 1750] [--full-page]');
  process.exit(2);
}
if (!existsSync(html)) {
  console.error(`report not found: ${html}`);
  process.exit(1);
}
const browser = await chromium.launch({
  executablePath: values.chromium,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: Number(values.width), height: Number(values.height) } });
  await page.goto(`file://${path.resolve(html)}`);
  await page.screenshot({ path: png, fullPage: values['full-page'] });
  console.log(`wrote ${png}`);
} finally {
  await browser.close();
}
