"""A tiny model server for the backend tests: speaks OpenAI's streaming chat completions
(`data: {...}` chunks, a usage chunk, `data: [DONE]`), GET /v1/models, and Anthropic's streaming
Messages API, on 127.0.0.1 in a thread. It records every request it gets and notices when a
client drops a stream before the end."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "test-key-0123456789"
REPLY = ["Hel", "lo, ", "wor", "ld!"]
MODELS = ["test-model", "slow-model"]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeModelServer:
    """`base_url` (…/v1) for OpenAI-compatible providers, `root_url` for Anthropic's SDK."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread
    requests: list[Recorded] = field(default_factory=list)
    dropped: threading.Event = field(default_factory=threading.Event)  # a client closed a stream early
    chunk_delay: float = 0.06

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_fake_model_server() -> FakeModelServer:
    server: FakeModelServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # a streamed body ends when the connection closes

        def log_message(self, *args: Any) -> None:
            pass

        def record(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            server.requests.append(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                            body))
            return body

        def send_json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def start_sse(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()

        def sse(self, data: Any, event: str | None = None) -> bool:
            """Write one event; False once the client has gone away."""
            text = (f"event: {event}\n" if event else "") + "data: " + (
                data if isinstance(data, str) else json.dumps(data)) + "\n\n"
            try:
                self.wfile.write(text.encode())
                self.wfile.flush()
                return True
            except (BrokenPipeError, ConnectionResetError):
                server.dropped.set()
                return False

        def do_GET(self) -> None:
            self.record()
            if self.path.rstrip("/") == "/v1/models":
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self.send_json(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
                return self.send_json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]})
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            body = self.record() or {}
            if self.path == "/v1/chat/completions":
                return self.openai(body)
            if self.path == "/v1/messages":
                return self.anthropic(body)
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})

        def openai(self, body: dict[str, Any]) -> None:
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self.send_json(401, {"error": {"message": "Incorrect API key provided.",
                                                      "type": "invalid_request_error", "code": "invalid_api_key"}})
            model = body.get("model")
            if model not in MODELS:
                return self.send_json(404, {"error": {"message": f"The model `{model}` does not exist",
                                                      "type": "invalid_request_error"}})
            pieces = REPLY if model == "test-model" else ["tick "] * 400
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model}
            self.start_sse()
            if not self.sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "finish_reason": None}]}):
                return
            for piece in pieces:
                time.sleep(server.chunk_delay)
                if not self.sse({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                                      "finish_reason": None}]}):
                    return
            self.sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                self.sse({**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(pieces),
                                                           "total_tokens": 11 + len(pieces)}})
            self.sse("[DONE]")

        def anthropic(self, body: dict[str, Any]) -> None:
            if API_KEY not in (self.headers.get("x-api-key"), (self.headers.get("Authorization") or "")[7:]):
                return self.send_json(401, {"type": "error", "error": {"type": "authentication_error",
                                                                       "message": "invalid x-api-key"}})
            model = body.get("model")
            self.start_sse()
            self.sse({"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}},
                "message_start")
            self.sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                     "content_block_start")
            for piece in REPLY:
                time.sleep(server.chunk_delay)
                if not self.sse({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": piece}}, "content_block_delta"):
                    return
            self.sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            self.sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                      "usage": {"output_tokens": len(REPLY)}}, "message_delta")
            self.sse({"type": "message_stop"}, "message_stop")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="fake-model-server", daemon=True)
    server = FakeModelServer(httpd, thread)
    thread.start()
    return server
