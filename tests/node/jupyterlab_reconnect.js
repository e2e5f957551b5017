// JupyterLab's own client library across a restart of the service (--keep-kernels): set a
// variable, then, once the test has restarted the service on the same port, JupyterLab's
// kernel connection must come back by itself, see `idle`, and read the variable back.
//   node jupyterlab_reconnect.js <http base URL with base path and trailing slash> <token> <kernel id>
// Prints "ready" once the variable is set (the test then restarts the service), then one
// JSON line of results; exits non-zero on any failure or after 3 minutes.
'use strict';
const { ServerConnection, KernelManager } = require('@jupyterlab/services');
const WebSocket = require('ws');
const { execute, fail } = require('./jupyterlab_client');

const [baseUrl, token, kernelId] = process.argv.slice(2);
const deadline = setTimeout(() => fail('timed out'), 180000);



// Resolves once the connection has gone through each of `states`, in order.
function connectionGoesThrough(kernel, states) {
  return new Promise(resolve => {
    const seen = [];
    kernel.connectionStatusChanged.connect((_, status) => {
      console.error(`connection ${status}`);
      if (status === states[seen.length]) seen.push(status);
      if (seen.length === states.length) resolve(seen);
    });
  });
}

function statusBecomes(kernel, wanted) {
  if (kernel.status === wanted) return Promise.resolve();
  return new Promise(resolve => {
    kernel.statusChanged.connect((_, status) => { console.error(`status ${status}`); if (status === wanted) resolve(); });
  });
}

async function main() {
  const serverSettings = ServerConnection.makeSettings({
    baseUrl, wsUrl: baseUrl.replace(/^http/, 'ws'), token, appendToken: true, WebSocket,
  });
  const manager = new KernelManager({ serverSettings });
  await manager.ready;
  const kernel = manager.connectTo({ model: { id: kernelId, name: 'python3' } });
  await kernel.info;
  await execute(kernel, 'x = 42');
  const reconnected = connectionGoesThrough(kernel, ['connecting', 'connected']);
  console.log('ready');
  const states = await reconnected;
  await statusBecomes(kernel, 'idle');
  const text = await execute(kernel, 'print(x)');
  kernel.dispose();
  manager.dispose();
  clearTimeout(deadline);
  console.log(JSON.stringify({ ok: true, states, text }));
  process.exit(0);
}

main().catch(fail);
