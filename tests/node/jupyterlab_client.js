// What the JupyterLab client flows share: failing with one JSON line, and running code.
'use strict';

function fail(why) {
  console.log(JSON.stringify({ ok: false, error: String((why && why.stack) || why) }));
  process.exit(1);
}

// Runs `code` on a @jupyterlab/services kernel connection; its stream output.
async function execute(kernel, code) {
  let text = '';
  const future = kernel.requestExecute({ code });
  future.onIOPub = msg => {
    if (msg.header.msg_type === 'stream') text += msg.content.text;
  };
  const reply = await future.done;
  if (reply.content.status !== 'ok') throw new Error(`execute: ${JSON.stringify(reply.content)}`);
  return text;
}

module.exports = { execute, fail };
