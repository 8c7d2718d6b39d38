"""`siamese serve`: the HTTP API (and `siamese review DIR`: the same server with a cluster result
to review). FastAPI and uvicorn come with the extra `pip install 'siamese[serve]'`."""

from __future__ import annotations

import logging
import socket

from omegaconf import DictConfig

from siamese.io.names import BadSetting

log = logging.getLogger(__name__)


def _server_parts():
    """FastAPI's app factory and uvicorn, or one line saying how to install them."""
    try:
        import uvicorn  # the optional extra: imported only by this command

        from siamese.service.app import create_app  # imports fastapi (the same extra)
        from siamese.service.http import Settings
    except ImportError as err:
        raise ImportError(f"siamese serve needs the serve extra ({err.name} is missing): "
                          "pip install 'siamese[serve]'") from None
    return uvicorn, create_app, Settings


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening, before anything says it is served; OSError (one
    line, exit 1) when the address is taken. uvicorn serves on this very socket, so no other
    process can take the port between the check and the start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn itself binds
    try:
        s.bind((host, port))
        s.listen(2048)
    except OSError as err:
        s.close()
        raise OSError(f"{host}:{port}: {err.strerror or err} — choose another --port") from None
    return s


def serve(cfg: DictConfig) -> dict:
    """Run the API until interrupted (Ctrl-C); prints where it listens and the key writes need."""
    uvicorn, create_app, Settings = _server_parts()
    settings = Settings(model_path=cfg.model_path, db=str(cfg.db), host=cfg.host, api_key=cfg.api_key,
                        max_upload_mb=float(cfg.max_upload_mb), workers=int(cfg.workers), queue=int(cfg.queue),
                        far_target=float(cfg.far_target), review_dir=cfg.review_dir)
    app = create_app(settings)
    sock = _listen(cfg.host, int(cfg.port))
    url = f"http://{'[' + cfg.host + ']' if ':' in cfg.host else cfg.host}:{cfg.port}"
    print(f"serving {url} (API docs {url}/docs; gallery {cfg.db}); Ctrl-C stops it")
    if settings.generated_key:
        print(f"writes need the header x-api-key: {settings.api_key}  (set api_key= or SIAMESE_API_KEY to fix one)")
    if cfg.review_dir:
        print(f"review: {url}/review")
        if cfg.open_browser:
            import threading
            import webbrowser

            # uvicorn.run below blocks: open the page a moment later, once it listens
            threading.Timer(1.5, webbrowser.open, [f"{url}/review"]).start()
    with sock:
        uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=int(cfg.port), log_level="warning")).run(sockets=[sock])
    return {"url": url}


def review(cfg: DictConfig) -> dict:
    """`siamese review DIR`: `serve` with the cluster result DIR to review at /review (opened in a browser)."""
    if not cfg.review_dir:
        raise BadSetting("give the `siamese cluster` result to review: siamese review DIR")
    return serve(cfg)
