// One user's flow with a real socket.io client of a chosen generation, against the service:
// spawn over HTTP, connect shell/stdin/iopub namespaces the way users write them, execute
// code, answer input(), read a 1 MB output, send buffers through a comm, shut down.
//   node kernel_flow.js <1|2|4> <default|websocket|polling> <endpoint with base path and trailing slash> <token>
// Prints one JSON line of results; exits non-zero on any failure or after 60 s.
'use strict';
const http = require('http');

const [version, transportMode, endpoint, token] = process.argv.slice(2);
const io = require(`socket.io-client-${version}`);
const STDIN = version === '4' ? 'stdin' : 'stdio';
const deadline = setTimeout(() => fail('timed out'), 60000);

function fail(why) {
  console.log(JSON.stringify({ ok: false, error: String(why && why.stack || why) }));
  process.exit(1);
}

function get(path) {
  return new Promise((resolve, reject) => {
    http.get(endpoint + path + (token ? `?token=${token}` : ''), res => {
      let body = '';
      res.on('data', chunk => { body += chunk; });
      res.on('end', () => res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode} ${body}`)));
    }).on('error', reject);
  });
}

function connect(channel, kernelId) {
  const url = `${endpoint}${channel}/${kernelId}`;
  const options = { forceNew: true, reconnection: false };
  if (transportMode !== 'default') options.transports = [transportMode];
  if (version === '4') options.auth = { token };
  else options.query = `token=${token}`;
  const socket = io(url, options);
  return new Promise((resolve, reject) => {
    socket.on('connect', () => resolve(socket));
    socket.on('connect_error', reject);
    socket.on('error', reject);
  });
}

let counter = 0;
function message(msgType, content) {
  counter += 1;
  return {
    header: { msg_id: `msg-${process.pid}-${counter}`, msg_type: msgType, session: `s-${process.pid}`, username: 'node', version: '5.3' },
    parent_header: {}, metadata: {}, content, buffers: [],
  };
}

function run(shell, iopub, stdin, code) {
  const request = message('execute_request', { code, silent: false, store_history: false, allow_stdin: true });
  const id = request.header.msg_id;
  return new Promise(resolve => {
    let text = '', reply = null, idle = false, streams = 0;
    const done = () => { if (reply && idle) { cleanup(); resolve({ text, reply, streams }); } };
    const onIopub = msg => {
      if (msg.parent_header.msg_id !== id) return;
      if (msg.header.msg_type === 'stream') { text += msg.content.text; streams += 1; }
      if (msg.header.msg_type === 'status' && msg.content.execution_state === 'idle') idle = true;
      done();
    };
    const onShell = msg => { if (msg.parent_header.msg_id === id) { reply = msg; done(); } };
    const onStdin = msg => {
      if (msg.header.msg_type === 'input_request') {
        const answer = message('input_reply', { value: `ünïcode ${msg.content.prompt}` });
        answer.parent_header = msg.header;
        stdin.emit('msg', answer);
      }
    };
    const cleanup = () => { iopub.off('msg', onIopub); shell.off('msg', onShell); stdin.off('msg', onStdin); };
    iopub.on('msg', onIopub); shell.on('msg', onShell); stdin.on('msg', onStdin);
    shell.emit('msg', request);
  });
}

function commEcho(shell, iopub) {
  return new Promise(resolve => {
    iopub.on('msg', msg => {
      if (msg.header.msg_type === 'comm_msg') {
        resolve({ data: msg.content.data, buffers: msg.buffers.map(b => Array.from(new Uint8Array(b))) });
      }
    });
    const open = message('comm_open', { comm_id: 'c1', target_name: 'echo', data: {} });
    shell.emit('msg', open);
    const msg = message('comm_msg', { comm_id: 'c1', data: { n: 3 } });
    msg.buffers = [Buffer.from([0, 1, 2, 255])];
    shell.emit('msg', msg);
  });
}

const ECHO_COMM = [
  'from comm import get_comm_manager',
  'def _echo_target(comm, open_msg):',
  '    @comm.on_msg',
  '    def _echo(msg):',
  '        comm.send({"echo": msg["content"]["data"]}, buffers=msg["buffers"])',
  'get_comm_manager().register_target("echo", _echo_target)',
].join('\n');

(async () => {
  const results = {};
  const kernelId = (await get('spawn/python3')).id;
  results.spawned = typeof kernelId === 'string';
  const shell = await connect('shell', kernelId);
  const iopub = await connect('iopub', kernelId);
  const stdin = await connect(STDIN, kernelId);
  const engine = s => (s.io.engine.transport.name);
  results.hello = (await run(shell, iopub, stdin, "print('héllo wörld ✓ 🚀')")).text;
  results.input = (await run(shell, iopub, stdin, "print(input('name? '))")).text;
  const big = await run(shell, iopub, stdin, "print('x' * 1000000)");
  results.bigLength = big.text.length;
  results.bigReply = big.reply.content.status;
  await run(shell, iopub, stdin, ECHO_COMM);
  results.comm = await commEcho(shell, iopub);
  results.transport = engine(shell);
  const stopped = await get(`shutdown/${kernelId}`);
  results.shutdown = stopped.kernelId === kernelId && stopped.id === kernelId;
  results.ok = true;
  for (const s of [shell, iopub, stdin]) s.close();
  clearTimeout(deadline);
  console.log(JSON.stringify(results));
  process.exit(0);
})().catch(fail);
