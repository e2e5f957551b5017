// JupyterLab's own client library against the service: restart a kernel, wait for `idle`,
// execute, N times in a row, as JupyterLab's "Restart Kernel" does.
//   node jupyterlab_restarts.js <v1|legacy> <http base URL with base path and trailing slash> <token> <kernel id> <restarts>
// Prints one JSON line of results; exits non-zero on any failure or after 10 minutes.
'use strict';
const { ServerConnection, KernelManager } = require('@jupyterlab/services');
const WebSocket = require('ws');
const { execute, fail } = require('./jupyterlab_client');

const [protocol, baseUrl, token, kernelId, restarts] = process.argv.slice(2);
// What is checked is that `idle` comes at all (a lost status leaves JupyterLab showing a busy
// kernel forever), not how fast a loaded machine starts a kernel: the bound is generous.
const IDLE_WITHIN_MS = 60000;
const deadline = setTimeout(() => fail('timed out'), 600000);


// The legacy protocol is what a client gets that offers no subprotocol.
class LegacyWebSocket extends WebSocket {
  constructor(url) {
    super(url);
  }
}

// Resolves once the kernel's status is `wanted` (at once if it is already); rejects after `ms`.
function statusBecomes(kernel, wanted, ms) {
  if (kernel.status === wanted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      kernel.statusChanged.disconnect(onStatus);
      reject(new Error(`status ${kernel.status}, not ${wanted}, ${ms} ms after the restart returned`));
    }, ms);
    function onStatus(_, status) {
      if (status !== wanted) return;
      clearTimeout(timer);
      kernel.statusChanged.disconnect(onStatus);
      resolve();
    }
    kernel.statusChanged.connect(onStatus);
  });
}


async function main() {
  const serverSettings = ServerConnection.makeSettings({
    baseUrl,
    wsUrl: baseUrl.replace(/^http/, 'ws'),
    token,
    appendToken: true,
    WebSocket: protocol === 'v1' ? WebSocket : LegacyWebSocket,
  });
  const manager = new KernelManager({ serverSettings });
  await manager.ready;
  const kernel = manager.connectTo({ model: { id: kernelId, name: 'python3' } });
  await kernel.info;
  if ((await execute(kernel, 'print("before")')) !== 'before\n') throw new Error('no output before restarts');
  const idleAfterMs = [];
  for (let i = 0; i < Number(restarts); i++) {
    const started = Date.now();
    await kernel.restart(); // the REST restart, then a new websocket (status 'unknown' until the kernel speaks)
    try {
      await statusBecomes(kernel, 'idle', IDLE_WITHIN_MS);
      idleAfterMs.push(Date.now() - started);
    } catch (error) {
      throw new Error(`restart ${i + 1}: ${error.message}`);
    }
    const text = await execute(kernel, `print(${i})`);
    if (text !== `${i}\n`) throw new Error(`restart ${i + 1}: output ${JSON.stringify(text)}`);
  }
  const protocolUsed = kernel._ws ? kernel._ws.protocol : null;  // '' is the legacy protocol
  kernel.dispose();
  manager.dispose();
  clearTimeout(deadline);
  console.log(JSON.stringify({ ok: true, restarts: idleAfterMs.length, idleAfterMs, protocol: protocolUsed }));
  process.exit(0);
}

main().catch(fail);
