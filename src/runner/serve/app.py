"""The HTTP service: a FastAPI app over a loaded Predictor and its Batcher.

    POST /predict   {"texts": ["...", ...]} or {"text": "..."}, optional "members": true
                    -> {"predictions": [{"pred_label", "pred_id", "p_<label>"...}], "strategy", "calibrated"}
    GET  /health    {"status": "ready"} (the server listens only once the models are loaded)
    GET  /metadata  labels, members, strategy, weights, calibration, where the run came from, versions,
                    the model card's test metrics
    GET  /docs      the OpenAPI page (FastAPI's)

Every answer is JSON. A request the server cannot take is a 4xx naming what is wrong: 400 for a body
that is not JSON (or not a JSON object), 415 for a content type other than application/json, 413
for too many texts, a text over the byte limit or a body over MAX_BODY_BYTES, 422 for a missing or
mistyped field (pydantic's account of it under "detail"); 503 with Retry-After when the queue is
full. The body is read and checked here rather than by FastAPI's own validation, so each of those
gets its own status and message; the schema still shows on /docs.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException

from runner.serve.batcher import Batcher, QueueFull, rows_of
from runner.version import versions

MAX_BODY_BYTES = 16 * 1024 * 1024  # a request body larger than this is refused before it is parsed
RETRY_AFTER_S = 1  # what a 503 asks a client to wait: about a few batches at the default limits


@dataclass(frozen=True)
class Limits:
    max_texts: int = 256  # texts in one request
    max_text_bytes: int = 65536  # UTF-8 bytes of one text (a longer one is truncated to max_length tokens anyway)
    max_batch: int = 64  # texts merged into one engine call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    max_queue: int = 1024  # texts waiting; beyond, 503


class PredictRequest(BaseModel):
    """One text or a list of texts; `members` adds each member's probabilities."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] | None = Field(None, description="The texts to classify (or give `text`).")
    text: str | None = Field(None, description="One text to classify (or give `texts`).")
    members: bool = Field(False, description="Add each member's probabilities (<member>.p_<label>).")

    @model_validator(mode="after")
    def _one_of(self) -> "PredictRequest":
        if (self.texts is None) == (self.text is None):
            raise ValueError("give either 'texts' (a list of strings) or 'text' (a string), not both or neither")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' is empty; give at least one text")
        return self


class Refused(Exception):
    """A request the server does not take: its status, message and headers."""

    def __init__(self, status: int, message: str, detail=None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.headers = status, message, detail, headers or {}


def _error(status: int, message: str, detail=None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message, "status": status}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def metadata_of(predictor, calibrated: bool, limits: Limits, card_metrics: dict | None) -> dict:
    choice = predictor.choice
    cal = choice.ensemble_calibration
    return {
        "labels": predictor.labels, "members": predictor.members, "strategy": choice.strategy,
        "weights": predictor.weights, "ensemble_method": choice.method, "calibrated": calibrated,
        "calibration": cal.to_dict() if cal is not None and calibrated else None,
        "run": {k: choice.run.get(k) for k in ("run_id", "name", "spec_hash", "dataset_id", "max_length")},
        "engine": getattr(predictor, "engine", "torch"),
        "limits": {"max_texts": limits.max_texts, "max_text_bytes": limits.max_text_bytes,
                   "max_batch": limits.max_batch, "max_wait_ms": limits.max_wait_ms, "max_queue": limits.max_queue},
        "test_metrics": card_metrics,
        "versions": versions(),
    }


def create_app(predictor, calibrated: bool = False, limits: Limits = Limits(), card_metrics: dict | None = None,
               members_allowed: bool = True) -> FastAPI:
    """The app over a loaded Predictor; its batcher starts and stops with the app (lifespan)."""
    batcher = Batcher(predictor, calibrated, limits.max_batch, limits.max_wait_ms, limits.max_queue)
    labels = predictor.labels
    meta = metadata_of(predictor, calibrated, limits, card_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="runner serve", version=meta["versions"].get("runner", ""), lifespan=lifespan,
                  description=f"The ensemble of run {meta['run']['run_id']} under strategy {meta['strategy']}.")
    app.state.batcher = batcher

    @app.exception_handler(Refused)
    async def _refused(request: Request, e: Refused):
        return _error(e.status, e.message, e.detail, e.headers)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):  # 404, 405 and the like, as JSON of the same shape
        return _error(e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        return _error(422, "the request does not match the schema", detail=_jsonable(e.errors()))

    @app.get("/health", summary="Ready once the models are loaded")
    async def health():
        return {"status": "ready", "queued_texts": batcher.queued, "batches": batcher.batches}

    @app.get("/metadata", summary="Labels, members, strategy, weights, origin, versions, test metrics")
    async def metadata():
        return meta

    @app.post("/predict", summary="Classify texts",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request):
        body = await _read_body(request, limits)
        texts, members = _checked(body, limits)
        if members and not members_allowed:
            raise Refused(422, "'members': this server is calibrated, and not every member has a stored "
                               "calibration; ask without members, or serve without --calibrated")
        try:
            prediction = await batcher.predict(texts)
        except QueueFull as e:
            raise Refused(503, str(e), headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        return {"predictions": rows_of(prediction, labels, members), "strategy": meta["strategy"],
                "calibrated": calibrated}

    return app


async def _read_body(request: Request, limits: Limits) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Refused(415, f"content type {kind or 'none'!r}: send the body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"the body is {int(declared)} bytes; the limit is {MAX_BODY_BYTES}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Refused(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _checked(body: bytes, limits: Limits) -> tuple[list[str], bool]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refused(400, f"the body is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise Refused(400, f"the body is a JSON {type(doc).__name__}; send an object: "
                           '{"texts": ["..."]} or {"text": "..."}')
    texts = doc.get("texts")
    if isinstance(texts, list) and len(texts) > limits.max_texts:  # before validating every element
        raise Refused(413, f"'texts' has {len(texts)} texts; the limit is {limits.max_texts} per request")
    try:
        req = PredictRequest.model_validate(doc)
    except ValidationError as e:
        raise Refused(422, _first_problem(e), detail=_jsonable(e.errors())) from None
    texts = req.texts if req.texts is not None else [req.text]
    for i, text in enumerate(texts):
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limits.max_text_bytes:
            where = f"'texts'[{i}]" if req.texts is not None else "'text'"
            raise Refused(413, f"{where} is {size} bytes (UTF-8); the limit is {limits.max_text_bytes} per text")
    return texts, req.members


def _first_problem(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _jsonable(errors) -> list:
    """pydantic's errors without what JSON cannot hold (the exception object in `ctx`)."""
    return json.loads(json.dumps(errors, default=str))
