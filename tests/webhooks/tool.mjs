// Test helper for tests/all/serve.rs, with code that is not Kiln's: real GitHub payloads
// (@octokit/webhooks-examples), GitHub's signing code (@octokit/webhooks-methods) and an OpenAPI
// validator (@apidevtools/swagger-parser), installed by scripts/webhook-fixtures.sh.
//
//   node tool.mjs example EVENT ACTION|-      print the first example payload of EVENT (with ACTION)
//   node tool.mjs sign SECRET < body           print `sha256=...` for the body
//   node tool.mjs verify SECRET SIG < body     exit 0 if SIG signs the body
//   node tool.mjs openapi FILE                 validate an OpenAPI document, print problems
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.KILN_NODE_MODULES;
if (!modules) {
  console.error("KILN_NODE_MODULES is not set");
  process.exit(2);
}
const [cmd, ...args] = process.argv.slice(2);
const stdin = () => readFileSync(0, "utf8");
const methods = () =>
  import(pathToFileURL(join(modules, "@octokit/webhooks-methods/dist-node/index.js")).href);

if (cmd === "example") {
  const [event, action] = args;
  const all = JSON.parse(
    readFileSync(join(modules, "@octokit/webhooks-examples/api.github.com/index.json"), "utf8"),
  );
  const entry = all.find((e) => e.name === event);
  const example = entry?.examples.find((x) => action === "-" || x.action === action);
  if (!example) {
    console.error(`no example of ${event} ${action}`);
    process.exit(2);
  }
  process.stdout.write(JSON.stringify(example));
} else if (cmd === "sign") {
  const { sign } = await methods();
  process.stdout.write(await sign(args[0], stdin()));
} else if (cmd === "verify") {
  const { verify } = await methods();
  process.exit((await verify(args[0], stdin(), args[1])) ? 0 : 1);
} else if (cmd === "openapi") {
  const require = createRequire(join(modules, "x.js"));
  const SwaggerParser = require("@apidevtools/swagger-parser");
  try {
    await SwaggerParser.validate(args[0]);
    console.log("valid");
  } catch (e) {
    console.error(String(e.message || e));
    process.exit(1);
  }
} else {
  console.error(`unknown command ${cmd}`);
  process.exit(2);
}
