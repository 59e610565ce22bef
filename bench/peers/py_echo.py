"""Python's own socketserver echo servers, the reference the Rust servers are measured against.

python3 bench/peers/py_echo.py threading|forking tcp|unix ADDRESS
Prints "serving on ADDRESS" first, like the Rust servers, and stops on SIGTERM.
"""
import os
import signal
import socketserver
import sys


class Echo(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True

    def handle(self):
        while True:
            data = self.connection.recv(65536)
            if not data:
                return
            self.connection.sendall(data)


def main():
    mode, transport, address = sys.argv[1:4]
    if transport == "tcp":
        host, port = address.rsplit(":", 1)
        base = socketserver.TCPServer
        addr = (host, int(port))
    else:
        base = socketserver.UnixStreamServer
        addr = address
        if os.path.exists(address):
            os.unlink(address)
    mixin = socketserver.ThreadingMixIn if mode == "threading" else socketserver.ForkingMixIn

    class Server(mixin, base):
        allow_reuse_address = True
        daemon_threads = True
        block_on_close = False
        request_queue_size = 1024

    server = Server(addr, Echo)
    shown = "%s:%d" % server.server_address[:2] if transport == "tcp" else address
    print("serving on " + shown, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
