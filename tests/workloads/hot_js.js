// A hot, named JavaScript function for the JIT symbolization truth test
// (tests/tests/unwind.rs), run as `node --perf-basic-prof hot_js.js SECONDS`.
// V8 then writes /tmp/perf-PID.map, naming its compiled code
// `JS:*tpHotJsFunction /path/hot_js.js:LINE:COL` (`~` interpreted, `^`
// baseline, `*` optimized). Each call runs a long loop of its own, so the
// caller stays cold and is never optimized: V8 cannot inline the function
// away, and nearly every sample is in tpHotJsFunction's own code.
// Announces `pid N` and `ready` on stdout, then runs for SECONDS and exits.
'use strict';

function tpHotJsFunction(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x * 31 + i) % 1000003;
  return x;
}

const seconds = Number(process.argv[2]);
if (!(seconds > 0)) {
  console.error('usage: node --perf-basic-prof hot_js.js SECONDS');
  process.exit(2);
}
const end = Date.now() + seconds * 1000;
console.log(`pid ${process.pid}`);
console.log(`tid main ${process.pid}`);
console.log('ready');
let sum = 0;
while (Date.now() < end) sum += tpHotJsFunction(20000000);
console.log(sum);
