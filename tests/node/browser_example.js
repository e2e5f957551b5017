// The README's browser example in headless Chromium (Debian's, driven by playwright-core):
// open examples/browser/index.html from the given page URL, wait for the kernel's "hello",
// then close the page, which must shut its kernel down (the test checks that).
//   node browser_example.js <page url with ?endpoint=...&token=...>
// Prints one JSON line of results; exits non-zero on any failure or after 60 s.
'use strict';
const { chromium } = require('playwright-core');

const [pageUrl] = process.argv.slice(2);
const deadline = setTimeout(() => fail('timed out'), 60000);

function fail(why) {
  console.log(JSON.stringify({ ok: false, error: String(why && why.stack || why) }));
  process.exit(1);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', error => errors.push(String(error)));
    page.on('console', msg => { if (msg.type() === 'error') errors.push(msg.text()); });
    await page.goto(pageUrl);
    await page.waitForFunction(() => document.getElementById('output').textContent.includes('hello'), null,
                               { timeout: 30000 });
    const output = await page.textContent('#output');
    await page.close({ runBeforeUnload: true });  // pagehide: the page shuts its kernel down
    console.log(JSON.stringify({ ok: true, output, errors }));
  } finally {
    await browser.close();
    clearTimeout(deadline);
  }
})().catch(fail);
