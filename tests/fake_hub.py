"""A local stand-in for the Hugging Face Hub's HTTP API, enough for ``push_to_hub`` and ``upload_folder``.

Point ``HF_ENDPOINT`` at it: repositories are created, card metadata is checked to parse, every file is accepted as a regular (non-LFS)
upload, and each commit's files land under ``root/<repo_id>/``. Requests it does not implement are
answered 404 and recorded in ``unknown``, for a failing test's message.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from huggingface_hub.repocard import REGEX_YAML_BLOCK

COMMIT_OID = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.unknown: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.startswith("/api/whoami"):
                    return self.reply(200, {"name": "you", "type": "user", "orgs": []})
                hub.unknown.append(f"GET {self.path}")
                self.reply(404, {"error": "not in the fake Hub"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/validate-yaml":  # a card's metadata, checked before upload: it must parse
                    block = REGEX_YAML_BLOCK.search(json.loads(body)["content"])
                    if block is None:
                        return self.reply(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
                    try:
                        yaml.safe_load(block.group(2))
                    except yaml.YAMLError as error:
                        return self.reply(400, {"error": f"invalid card metadata: {error}"})
                    return self.reply(200, {"errors": [], "warnings": []})
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    repo_id = f"{request.get('organization') or 'you'}/{request['name']}"
                    (hub.root / repo_id).mkdir(parents=True, exist_ok=True)
                    return self.reply(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id, "id": repo_id})
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/[^/]+", self.path):
                    files = json.loads(body)["files"]
                    return self.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/[^/]+", self.path):
                    for line in body.splitlines():
                        entry = json.loads(line)
                        if entry["key"] == "file":
                            target = hub.root / match.group(1) / entry["value"]["path"]
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(base64.b64decode(entry["value"]["content"]))
                    url = f"http://{self.headers['Host']}/{match.group(1)}/commit/{COMMIT_OID}"
                    return self.reply(200, {"commitUrl": url, "commitOid": COMMIT_OID, "pullRequestUrl": None})
                hub.unknown.append(f"POST {self.path}")
                self.reply(404, {"error": "not in the fake Hub"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str) -> set[str]:
        folder = self.root / repo_id
        return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
