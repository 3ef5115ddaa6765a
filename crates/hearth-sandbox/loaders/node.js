// hearth's prestart loader for Node.js: started in the sandbox before the code exists, it
// says it is ready on fd 4, waits for the program's argv on fd 3 (NUL-separated), then
// starts the program as
// `node main.js args...` would: process.argv, no -e in process.execArgv, and the file
// run as the main module (require.main === module).
(() => {
  const fs = require('fs');
  const path = require('path');
  fs.writeSync(4, 'r');
  fs.closeSync(4);
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    const n = fs.readSync(3, buf, 0, buf.length, null);
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  fs.closeSync(3);
  const argv = Buffer.concat(chunks).toString().split('\0');
  process.argv = [process.execPath, path.resolve(argv[0]), ...argv.slice(1)];
  process.execArgv.length = 0;
  require('module').runMain();
})();
