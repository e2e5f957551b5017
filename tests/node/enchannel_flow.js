// The published enchannel-socketio-backend@0.1.0, used as its users use it:
// spawn, connect, subscribe, `next` an execute request that calls input(), answer it on the
// `stdio` channel, read the output, disconnect, shut down.
//   node enchannel_flow.js <endpoint with base path and trailing slash>
// Node is no browser: XMLHttpRequest is shimmed with xmlhttprequest-ssl (which the socket.io
// 1.x client itself uses in node) and `location` says the page is on another origin, as a
// web app embedding kernels would be. Nothing of the package is changed.
'use strict';
const NodeXHR = require('xmlhttprequest-ssl').XMLHttpRequest;
global.XMLHttpRequest = function XMLHttpRequest() {
  const xhr = new NodeXHR();
  xhr.withCredentials = false; // browsers' XHR2 has it; browser-request checks for CORS support
  // xmlhttprequest-ssl announces HEADERS_RECEIVED just before it sets `status`; a browser
  // sets it first. Run the page's handler a microtask later, when `status` is there.
  let handler = null;
  Object.defineProperty(xhr, 'onreadystatechange', {
    get: () => handler && (() => queueMicrotask(() => handler.call(xhr))),
    set: fn => { handler = fn; },
  });
  return xhr;
};
Object.assign(global.XMLHttpRequest, { UNSENT: 0, OPENED: 1, HEADERS_RECEIVED: 2, LOADING: 3, DONE: 4 });
global.location = new URL('http://127.0.0.1:9/app/index.html');
const backend = require('enchannel-socketio-backend');

const endpoint = process.argv[2];
const deadline = setTimeout(() => fail('timed out'), 60000);

function fail(why) {
  console.log(JSON.stringify({ ok: false, error: String(why && why.stack || why) }));
  process.exit(1);
}

function message(msgType, content, parent) {
  return {
    header: { msg_id: `${msgType}-${Date.now()}`, msg_type: msgType, session: 'enchannel', username: 'seed', version: '5.0' },
    parent_header: parent || {}, metadata: {}, content,
  };
}

(async () => {
  const id = await backend.spawn(endpoint, 'python3');
  const channels = await backend.connect(endpoint, id);
  const request = message('execute_request', {
    code: "name = input('Who? ')\nprint('Hello, ' + name + ' ✓')",
    silent: false, store_history: true, user_expressions: {}, allow_stdin: true,
  });
  const result = await new Promise(resolve => {
    let text = '', reply = null, idle = false, prompt = null;
    const check = () => { if (reply && idle) resolve({ text, status: reply.content.status, prompt }); };
    channels.iopub.subscribe(msg => {
      if (msg.parent_header.msg_id !== request.header.msg_id) return;
      if (msg.header.msg_type === 'stream') text += msg.content.text;
      if (msg.header.msg_type === 'status' && msg.content.execution_state === 'idle') { idle = true; check(); }
    });
    channels.shell.subscribe(msg => {
      if (msg.parent_header.msg_id === request.header.msg_id) { reply = msg; check(); }
    });
    channels.stdio.subscribe(msg => {
      if (msg.header.msg_type === 'input_request') {
        prompt = msg.content.prompt;
        channels.stdio.next(message('input_reply', { value: 'Ada' }, msg.header));
      }
    });
    channels.shell.next(request);
  });
  await backend.disconnect(channels);
  await backend.shutdown(endpoint, id);
  clearTimeout(deadline);
  console.log(JSON.stringify({ ok: true, id, ...result }));
  process.exit(0);
})().catch(fail);
