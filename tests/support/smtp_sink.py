"""A real SMTP server for the mail tests (aiosmtpd, from PyPI): bound to 127.0.0.1 on the port
given (0: a free one), it writes each message it accepts, exactly as received, to its own file
in the directory given (`<n>.eml`, written to a temporary name first, then renamed), and
prints `listening on 127.0.0.1:PORT` once it accepts connections. Recipients whose address
starts with `refused` are refused with a permanent 550.

    python smtp_sink.py <maildir> [port] [--withhold]

With --withhold it writes each message but never replies to its DATA (the client waits for
an acknowledgement that never comes): a crash test kills the server in that window.
"""

import asyncio
import os
import socket
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory, withhold):
        self.directory = directory
        self.withhold = withhold
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # A mailbox that does not exist, for good: the sender must not retry it.
        if address.startswith("refused"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = os.path.join(self.directory, f"{os.getpid()}-{self.count:07d}.eml")
        with open(name + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(name + ".tmp", name)
        if self.withhold:
            await asyncio.Event().wait()
        return "250 OK queued as %d" % self.count


def main():
    directory = sys.argv[1]
    withhold = "--withhold" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--withhold"]
    port = int(args[1]) if len(args) > 1 else 0
    if port == 0:
        # The controller checks it is up by connecting to its port: it needs a real one.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Sink(directory, withhold), hostname="127.0.0.1", port=port,
                            data_size_limit=10 * 1024 * 1024)
    controller.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
