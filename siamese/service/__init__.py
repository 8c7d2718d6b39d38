"""The HTTP service (`siamese serve`, FastAPI): the API over the same model and SQLite gallery as
the command line. `engine` does the work without HTTP, `http` reads requests and maps errors,
`routes` holds the /v1 routes and `app` puts them together (`create_app`).

FastAPI, uvicorn and python-multipart are the optional extra `pip install 'siamese[serve]'`.
"""
