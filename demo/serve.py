#!/usr/bin/env python3
"""The demo's repository server: DIR on 127.0.0.1, on a port the system picks.

Usage: serve.py DIR PORT_FILE RATE

Writes the port to PORT_FILE once it accepts connections. Each .tar.xz is sent at RATE bytes
per second (0: unthrottled), so a demo on loopback shows progress bars that move instead of
finishing at once; index.json and the rest go at full speed. One thread per request, so
parallel downloads each get RATE. Requests are logged to stderr, as `python3 -m http.server`
does.
"""

import functools
import http.server
import os
import sys
import time

CHUNK = 16 * 1024


class Handler(http.server.SimpleHTTPRequestHandler):
    rate = 0

    def copyfile(self, source, outputfile):
        if not self.rate or not self.path.endswith(".tar.xz"):
            return super().copyfile(source, outputfile)
        start, sent = time.monotonic(), 0
        while chunk := source.read(CHUNK):
            outputfile.write(chunk)
            sent += len(chunk)
            # Sleep until the bytes sent so far are on schedule.
            ahead = sent / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


def main():
    directory, port_file, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
    Handler.rate = rate
    handler = functools.partial(Handler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # Written whole under a temporary name, so a reader never sees half a number.
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
