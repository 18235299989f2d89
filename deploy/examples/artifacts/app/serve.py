"""A tiny HTTP server shipped as an artifact: answers with its pod's name on the port its node allocated."""

import http.server
import os

NAME = os.environ.get("POD_NAME", "?").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from " + NAME + b" (fetched as an artifact)\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


http.server.HTTPServer((os.environ["POD_IP"], int(os.environ["PORT_HTTP"])), Handler).serve_forever()
