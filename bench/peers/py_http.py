"""Python's own HTTP server, the reference our HTTP layer is measured against (issue 17).

python3 bench/peers/py_http.py ADDRESS
http.server.ThreadingHTTPServer with protocol_version "HTTP/1.1" (keep-alive on), serving
TechEmpower's plaintext (GET /plaintext) and JSON (GET /json, json.dumps per request) tests.
Prints "serving on ADDRESS" first, like the Rust servers, and stops on SIGTERM.
"""
import ctypes
import http.server
import json
import os
import signal
import sys

HELLO = b"Hello, World!"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The Rust servers set TCP_NODELAY on their connections too.
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path == "/plaintext":
            self.reply(200, "text/plain", HELLO)
        elif self.path == "/json":
            body = json.dumps({"message": "Hello, World!"}, separators=(",", ":")).encode()
            self.reply(200, "application/json", body)
        else:
            self.reply(404, "text/plain", b"not found\n")

    def reply(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # A line on stderr per request would measure the logging (TechEmpower's Python
        # entries log nothing either).
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    block_on_close = False


def main():
    # End with the harness that started us, also when it is killed (PR_SET_PDEATHSIG, Linux).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    host, port = sys.argv[1].rsplit(":", 1)
    server = Server((host, int(port)), Handler)
    print("serving on %s:%d" % server.server_address[:2], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
