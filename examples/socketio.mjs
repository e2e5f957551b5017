// Spawn a kernel, run code over socket.io (kernel-relay's namespaces), print the output,
// shut the kernel down. socket.io-client 4 (node 18+ has fetch):
//   cd examples && npm install
//   KERNELS_SERVICE_TOKEN=<token> node socketio.mjs [http://127.0.0.1:8000/jupyter/]
import { randomUUID } from "node:crypto";
import { io } from "socket.io-client";

const endpoint = process.argv[2] ?? "http://127.0.0.1:8000/jupyter/";
const token = process.env.KERNELS_SERVICE_TOKEN;

const spawned = await fetch(`${endpoint}spawn/python3`, { headers: { Authorization: `token ${token}` } });
const { id } = await spawned.json();

const shell = io(`${endpoint}shell/${id}`, { auth: { token } });
const iopub = io(`${endpoint}iopub/${id}`, { auth: { token } });
const msgId = randomUUID();

const done = new Promise(resolve => {
  iopub.on("msg", msg => {
    if (msg.parent_header.msg_id !== msgId) return;
    if (msg.header.msg_type === "stream") process.stdout.write(msg.content.text); // hello
    if (msg.header.msg_type === "status" && msg.content.execution_state === "idle") resolve();
  });
});
iopub.on("connect", () => shell.emit("msg", {
  header: { msg_id: msgId, msg_type: "execute_request", session: randomUUID(),
            username: "me", version: "5.3" },
  parent_header: {}, metadata: {}, content: { code: "print('hello')" }, buffers: [],
}));

await done;
shell.close();
iopub.close();
await fetch(`${endpoint}shutdown/${id}`, { headers: { Authorization: `token ${token}` } });
