const r = require('@w/req');
async function go() { return import('@w/dyn'); }
// import { nope } from '@w/util';
const s = "import '@w/util'";
