// Bunker's JavaScript and TypeScript driver: the session's persistent Bun
// interpreter of one of the two languages,
//   bun /opt/bunker/drivers/javascript.mjs javascript|typescript
//
// bunker-init speaks to it over two pipes (src/init/interp_int.h): requests
// on fd 60, "<seq> <length> <timeout ms>\n" and then the program text;
// answers on fd 61, "R\n" once ready and "D <seq> <status>\n" once a request
// has run (console output is written synchronously, so it is in the pipes
// by then).
//
// Each run is transpiled in Bun's REPL mode, which turns top-level
// declarations into assignments to globals and wraps the code in a function
// (async when it awaits) that returns the last expression's value; it runs
// in this realm (node:vm runInThisContext), so declarations, imports and
// their values stay from run to run. The value is shown (Bun.inspect)
// unless undefined. A run's timeout, when it has one, bounds its synchronous
// part (the vm timeout, which interrupts even `while (true) {}` and keeps the
// state); SIGINT ends the wait for an asynchronous one. Timers and servers
// the code starts keep running between runs; an exception they throw later
// is printed, never fatal. process.exit(n) ends the interpreter with n, and
// init starts a new one for the next run.
import fs from "node:fs";
import { createRequire } from "node:module";
import vm from "node:vm";

const REQ_FD = 60;
const ANS_FD = 61;
const loader = process.argv[2] === "typescript" ? "ts" : "js";
const transpiler = new Bun.Transpiler({ loader, replMode: true });
const INTERRUPTED = Symbol("interrupted");
let interrupt = null; // ends the wait of the run under way

process.on("SIGINT", () => {
  if (interrupt) interrupt();
});
process.on("uncaughtException", (e) => console.error(Bun.inspect(e)));
process.on("unhandledRejection", (e) => console.error("Uncaught (in promise)", Bun.inspect(e)));

// As in the REPL: require() and relative imports resolve from the working
// directory.
globalThis.require = createRequire(process.cwd() + "/");

// REPL mode makes the value of a declaration that ends the code the
// assignment it turns it into (`let z = 3` returns `z = 3`); a notebook
// shows nothing for a declaration. Such an assignment's targets are all
// names the code declares, which REPL mode hoists into `var` lines at the
// top (an assignment to a name declared earlier in the same code, the rare
// `let z = 1; z = 3`, is taken for a declaration too).
function endsWithDeclaration(js) {
  const declared = new Set();
  const hoist = /var ([^;\n]+);\n/y;
  for (let m; (m = hoist.exec(js)); ) for (const n of m[1].split(", ")) declared.add(n);
  const at = js.lastIndexOf("\n    value: ");
  if (declared.size === 0 || at < 0) return false;
  const target = /^([A-Za-z_$][\w$]*|[{[][^=]*[}\]]) = /.exec(js.slice(at + 12));
  return target !== null && target[1].match(/[A-Za-z_$][\w$]*/g).every((n) => declared.has(n));
}

function answer(text) {
  fs.writeSync(ANS_FD, text);
}

async function run(code, timeoutMs) {
  try {
    const js = transpiler.transformSync(code);
    let result = vm.runInThisContext(js, {
      filename: process.cwd() + "/[execution]",
      timeout: timeoutMs > 0 ? timeoutMs : undefined,
      // import() resolves from the file name: the working directory.
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    });
    if (result && typeof result.then === "function") {
      const stop = new Promise((resolve) => {
        interrupt = () => resolve(INTERRUPTED);
      });
      result = await Promise.race([result, stop]);
      interrupt = null;
      if (result === INTERRUPTED) {
        console.error("Interrupted");
        return 130;
      }
    }
    const value = result == null || endsWithDeclaration(js) ? undefined : result.value;
    if (value !== undefined) console.log(Bun.inspect(value, { colors: false }));
    return 0;
  } catch (e) {
    interrupt = null;
    console.error(Bun.inspect(e, { colors: false }));
    return 1;
  }
}

// Requests come whole or in pieces; each runs after the one before. The
// pieces of a long one are joined once, when it is all there.
let chunks = [];
let total = 0;
let frame = null; // the header of the request being read
let chain = Promise.resolve();

function take() {
  for (;;) {
    if (frame === null) {
      if (total === 0) return;
      if (chunks.length > 1) chunks = [Buffer.concat(chunks)];
      const nl = chunks[0].indexOf(10);
      if (nl < 0) return;
      const fields = chunks[0].subarray(0, nl).toString().split(" ");
      if (fields.length !== 3 || !fields.every((f) => /^[0-9]+$/.test(f))) {
        answer("E bad header\n");
        process.exit(125);
      }
      const [seq, len, timeout] = fields.map(Number);
      frame = { seq, timeout, start: nl + 1, end: nl + 1 + len };
    }
    if (total < frame.end) return;
    const buf = chunks.length > 1 ? Buffer.concat(chunks) : chunks[0];
    const { seq, timeout } = frame;
    const code = buf.subarray(frame.start, frame.end).toString("utf8");
    const rest = buf.subarray(frame.end);
    chunks = rest.length ? [rest] : [];
    total = rest.length;
    frame = null;
    chain = chain.then(async () => {
      const status = await run(code, timeout);
      answer(`D ${seq} ${status}\n`);
    });
  }
}

const requests = fs.createReadStream(null, { fd: REQ_FD, highWaterMark: 1 << 16 });
requests.on("data", (chunk) => {
  chunks.push(chunk);
  total += chunk.length;
  take();
});
// init is done with this interpreter: what the code left running must not
// keep it.
requests.on("end", () => chain.then(() => process.exit(0)));
answer("R\n");
