// A real SMTP server for the mail load test (nodemailer's smtp-server, from npm): bound to
// 127.0.0.1 on the port given (0: a free one), it writes each message it accepts, exactly as
// received, to its own file in the directory given (`<pid>-<n>.eml`, written to a temporary
// name first, then renamed) before it acknowledges the DATA, and prints
// `listening on 127.0.0.1:PORT` once it accepts connections. The Python sink of the tests
// (aiosmtpd) reads DATA a line at a time and holds a sale's mail drain near 180/s on this
// machine; this one streams it.
//
//   node smtp_sink.js <maildir> [port]
'use strict';
const { SMTPServer } = require('smtp-server');
const fs = require('fs');
const path = require('path');

const [dir, portArg] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node smtp_sink.js <maildir> [port]');
  process.exit(2);
}
fs.mkdirSync(dir, { recursive: true });
let count = 0;
const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  logger: false,
  maxClients: 256,
  size: 10 * 1024 * 1024,
  onData(stream, session, callback) {
    count += 1;
    const n = count;
    const name = path.join(dir, `${process.pid}-${String(n).padStart(7, '0')}.eml`);
    const out = fs.createWriteStream(`${name}.tmp`);
    out.on('error', callback);
    out.on('finish', () => {
      if (stream.sizeExceeded) {
        fs.unlink(`${name}.tmp`, () => callback(new Error('552 message too big')));
        return;
      }
      fs.rename(`${name}.tmp`, name, (err) => callback(err || null, `OK queued as ${n}`));
    });
    stream.pipe(out);
  },
});
server.on('error', (err) => console.error(`smtp sink: ${err.message}`));
server.listen(Number(portArg || 0), '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.server.address().port}`);
});
