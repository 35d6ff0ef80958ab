"""dsocr as an OCRmyPDF engine: ``ocrmypdf --plugin dsocr_ocrmypdf in.pdf out.pdf``.

Each page image OCRmyPDF renders is sent to a dsocr server (``--dsocr-url``, default
``$DSOCR_URL`` or http://127.0.0.1:8001; ``--dsocr-model``; ``--dsocr-api-key`` or
``$DSOCR_API_KEY``), which holds the model once for every OCRmyPDF worker and batches their pages.
With no server there (and no URL given), or ``--dsocr-url local``, the run starts one local server
for all its workers and stops it when it ends (``local.py``).
The answer's lines and words (ppocr: word boxes split at the recognizer's character positions) come
back in the page image's pixels and become OCRmyPDF's ``OcrElement`` tree
(``generate_ocr``), which its fpdf2 renderer turns into the invisible text layer. ``--rotate-pages``
asks the server which way the page is turned (ppocr's ``rotation``).

Options dsocr cannot honour are refused in OCRmyPDF's own way (``BadArgsError``, exit code 1):
the sandwich renderer, ``--deskew``, Tesseract's own settings, languages the model does not read.
"""

from __future__ import annotations

import logging
import os

from ocrmypdf import hookimpl
from ocrmypdf.exceptions import BadArgsError, MissingDependencyError
from pydantic import BaseModel

from dsocr_ocrmypdf.engine import DsocrEngine
from dsocr_ocrmypdf.local import LocalServerFailed, local_url
from dsocr_ocrmypdf.server import DsocrServer, ServerUnavailable

log = logging.getLogger(__name__)
DEFAULT_URL = "http://127.0.0.1:8001"
LOCAL = "local"  # --dsocr-url local: always a local server for the run


class DsocrOptions(BaseModel):
    url: str | None = None  # None: the default URL if a server answers there, else a local one
    model: str | None = None
    api_key: str | None = None
    timeout: float = 300.0


@hookimpl
def register_options():
    return {"dsocr": DsocrOptions}


@hookimpl
def add_options(parser):
    group = parser.add_argument_group("dsocr", "OCR on a dsocr server (the dsocr_ocrmypdf plugin)")
    group.add_argument(
        "--dsocr-url",
        default=os.environ.get("DSOCR_URL"),
        help=f"The dsocr server (default: $DSOCR_URL, else {DEFAULT_URL} if a server answers there, else a "
        f"local server started for the run); '{LOCAL}': always a local server for the run.",
    )
    group.add_argument("--dsocr-model", default=None, help="The model to read with (default: the server's).")
    group.add_argument(
        "--dsocr-api-key", default=os.environ.get("DSOCR_API_KEY"), help="The server's --api-key ($DSOCR_API_KEY)."
    )
    group.add_argument("--dsocr-timeout", type=float, default=300.0, help="Seconds one page may take.")


def _refused(options) -> list[str]:
    """The options given that this engine cannot honour, in words."""
    refused = []
    if options.pdf_renderer == "sandwich":
        refused.append("--pdf-renderer sandwich (dsocr gives OCRmyPDF its text, not a PDF: use fpdf2, the default)")
    if getattr(options, "deskew", False):
        refused.append("--deskew (dsocr reads skewed lines as they are and does not measure skew)")
    tess = options.tesseract
    for flag, value in (
        ("--tesseract-config", tess.config),
        ("--tesseract-pagesegmode", tess.pagesegmode),
        ("--tesseract-oem", tess.oem),
        ("--user-words", tess.user_words),
        ("--user-patterns", tess.user_patterns),
    ):
        if value:
            refused.append(f"{flag} (a Tesseract setting)")
    return refused


def _selected(options) -> bool:
    return options is None or getattr(options, "ocr_engine", "auto") == "auto"


@hookimpl
def check_options(options):
    if not _selected(options):
        return
    refused = _refused(options)
    if refused:
        raise BadArgsError("The dsocr OCR engine cannot honour: " + "; ".join(refused))
    server = _server(options)
    try:
        models = server.models()
    except ServerUnavailable as exc:
        raise MissingDependencyError(
            f"{exc}. Start one with `dsocr serve`, or point --dsocr-url at a running server."
        ) from None
    if options.dsocr.model and options.dsocr.model not in models:
        raise BadArgsError(f"--dsocr-model {options.dsocr.model}: the server at {server.url} runs {', '.join(models)}")


def _server(options) -> DsocrServer:
    """The server the run's pages go to: the URL given; with none, the default one if it answers,
    else a local server started here, in OCRmyPDF's main process before its workers exist
    (``local.py``); the workers get its URL in ``options``."""
    d = options.dsocr
    url = d.url
    if url is None and _answers(DsocrServer(DEFAULT_URL, d.model, d.api_key, d.timeout)):
        options.dsocr.url = DEFAULT_URL
    elif url in (None, LOCAL):
        try:
            options.dsocr.url = local_url(options.dsocr.model)
        except LocalServerFailed as exc:
            raise MissingDependencyError(str(exc)) from None
    return DsocrServer.from_options(options)


def _answers(server: DsocrServer) -> bool:
    try:
        server.models()
    except ServerUnavailable:
        return False
    return True


@hookimpl
def get_ocr_engine(options):
    return DsocrEngine() if _selected(options) else None


__all__ = ["DsocrEngine", "DsocrOptions"]
