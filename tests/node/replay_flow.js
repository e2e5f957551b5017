// A socket.io client that leaves in the middle of a cell's output and comes back: what it
// missed must come first, once, in order, then the rest.
//   node replay_flow.js <2|4> <endpoint with base path and trailing slash> <token> <kernel id>
// The cell prints 0..999, sleeps 2 s, prints 1000..1999: the client leaves in the quiet
// gap (so nothing is on its way to it as it goes) and comes back 3.5 s later. Every 500
// lines it also pauses 0.2 s: a kernel's iopub drops what waits past 1000 messages for a
// reader that got no CPU, and a burst of 1000 lines with its status came to 1002. Handlers are
// set as each socket is made, as clients do, so nothing that arrives is missed.
// Prints one JSON line: the cell's stream text as the client saw it, its execute_reply count.
'use strict';
const [version, endpoint, token, kernelId] = process.argv.slice(2);
const io = require(`socket.io-client-${version}`);
const CODE = 'import time\nfor i in range(2000):\n    print(i)\n    if i == 999: time.sleep(2)\n    elif i % 500 == 499: time.sleep(0.2)';
const request = {
  header: { msg_id: `replay-${process.pid}`, msg_type: 'execute_request', session: `s-${process.pid}`, username: 'node', version: '5.3' },
  parent_header: {}, metadata: {}, content: { code: CODE, silent: false, store_history: false }, buffers: [],
};
const id = request.header.msg_id;
let text = '', replies = 0, idle = false, progress = () => {};
const deadline = setTimeout(() => fail(`timed out: ${text.length} characters, idle ${idle}, ${replies} replies`), 60000);

function fail(why) {
  console.log(JSON.stringify({ ok: false, error: String(why && why.stack || why) }));
  process.exit(1);
}

function onIopub(msg) {
  if (msg.parent_header.msg_id !== id) return;
  if (msg.header.msg_type === 'stream') text += msg.content.text;
  if (msg.header.msg_type === 'status' && msg.content.execution_state === 'idle') idle = true;
  progress();
}

function onShell(msg) {
  if (msg.parent_header.msg_id === id) replies += 1;
  progress();
}

function connect(channel, onMsg) {
  const options = { forceNew: true, reconnection: false, transports: ['websocket'] };
  if (version === '4') options.auth = { token };
  else options.query = `token=${token}`;
  const socket = io(`${endpoint}${channel}/${kernelId}`, options);
  socket.on('msg', onMsg);
  return new Promise((resolve, reject) => {
    socket.on('connect', () => resolve(socket));
    socket.on('connect_error', reject);
  });
}

const until = condition => new Promise(resolve => {
  progress = () => { if (condition()) resolve(); };
  progress();
});
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

(async () => {
  let [shell, iopub] = await Promise.all([connect('shell', onShell), connect('iopub', onIopub)]);
  shell.emit('msg', request);
  await until(() => text.endsWith('999\n'));
  shell.close();
  iopub.close();
  const before = text.length;
  await sleep(3500);
  [shell, iopub] = await Promise.all([connect('shell', onShell), connect('iopub', onIopub)]);
  await until(() => idle && replies > 0);
  await sleep(300); // anything more would be a duplicate
  shell.close();
  iopub.close();
  clearTimeout(deadline);
  console.log(JSON.stringify({ ok: true, text, replies, before }));
  process.exit(0);
})().catch(fail);
