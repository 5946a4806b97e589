"""`runner serve`: a run's (or an export's) ensemble behind HTTP, with dynamic batching.

`load.py` loads what is served (the same Predictor as `runner predict`), `batcher.py` merges
concurrent requests into batches, `app.py` is the FastAPI app (its endpoints and error answers),
`server.py` runs it under uvicorn and drains on SIGTERM. FastAPI and uvicorn are the `serve` extra.
"""
