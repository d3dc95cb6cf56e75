"""RemoteMonitor (Keras's callback): the epoch logs POSTed to root + path, as JSON or as the form
field `field`, read back by a local http.server on 127.0.0.1 running in a thread."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from jaxdl import create_model
from jaxdl.errors import JaxdlError
from jaxdl.parallel import make_mesh
from jaxdl.train import RemoteMonitor, Trainer


@pytest.fixture
def server():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers["Content-Length"])
            received.append(
                {
                    "path": self.path,
                    "type": self.headers["Content-Type"],
                    "token": self.headers.get("X-Token"),
                    "body": self.rfile.read(n).decode(),
                }
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", received
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_posts_json_per_epoch(server):
    root, received = server
    cb = RemoteMonitor(root=root, path="/epochs", send_as_json=True, headers={"X-Token": "t"})
    cb.on_epoch_end(0, {"loss": np.float32(0.5), "accuracy": np.array(0.25)})
    cb.on_epoch_end(1, {"loss": 0.125, "val_loss": 0.75})
    assert [r["path"] for r in received] == ["/epochs", "/epochs"]
    assert received[0]["type"] == "application/json" and received[0]["token"] == "t"
    assert [json.loads(r["body"]) for r in received] == [
        {"epoch": 0, "loss": 0.5, "accuracy": 0.25},
        {"epoch": 1, "loss": 0.125, "val_loss": 0.75},
    ]


def test_form_field_during_fit(server, digits):
    """Keras's default (send_as_json=False): a form body whose `field` holds the JSON text; one
    POST per epoch of a real fit, with the same numbers as the History."""
    root, received = server
    t = Trainer(
        create_model("mlp", input_shape=(8, 8, 1), hidden=(16,)),
        mesh=make_mesh(num_devices=1),
        seed=0,
    )
    train = digits.train.subset(slice(0, 128))
    cb = RemoteMonitor(root=root, path="/publish/epoch/end/", field="payload")
    h = t.fit(train, epochs=3, batch_size=32, validation_data=digits.val, callbacks=[cb], verbose=0)
    assert len(received) == 3
    assert {r["type"] for r in received} == {"application/x-www-form-urlencoded"}
    posted = [json.loads(urllib.parse.parse_qs(r["body"])["payload"][0]) for r in received]
    assert [p["epoch"] for p in posted] == [0, 1, 2]
    hist = h.history if hasattr(h, "history") else h
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose([p[key] for p in posted], hist[key], rtol=1e-6)


def test_unreachable_server_warns_and_bad_root():
    with pytest.warns(UserWarning, match="Could not reach RemoteMonitor root server"):
        RemoteMonitor(root="http://127.0.0.1:9", timeout=2).on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(JaxdlError, match="root must be an http"):
        RemoteMonitor(root="localhost:9000")
