"""Read-only HTTP server over a variant database: a browser page and a JSON API (FastAPI +
uvicorn, ``server`` extra).

Page: ``/`` (plain HTML/CSS/JS shipped in ``biointerp/db/web``, no CDN), state in the URL
(``/?q=BRCA1&sort=score&order=desc&page=2``, ``/?variant=chr17:43045712:T:C``).

API: ``/health``, ``/heads`` (head metadata), ``/variants/{id}``, ``/variants?region=``, ``/genes/{gene}``, ``/search?q=``;
for the page ``/api/info``, ``/api/search`` (paged, sorted on the server), ``/api/points``
(plot), ``/api/variant/{id}`` (all heads + calibration reading), ``/api/calibration``; plus
FastAPI's ``/docs`` and ``/openapi.json``.

The database is opened with ``read_only=True``; every query is parameterized (user text never
reaches SQL text). Result sizes are capped; bad input answers 4xx with a JSON ``detail``
message. Handlers are ``async`` and run the (short, index-backed) DuckDB query on the event
loop: no thread-pool hop per request. ``workers > 1`` runs that many processes, each with its
own read-only connection, on one port.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from biointerp.db.query import QueryError, Result, VariantDB

WEB = Path(__file__).with_name("web")
#: the page loads only its own files; inline script/style and plug-ins are refused
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


try:  # orjson (server extra) encodes about 10x faster than the standard library
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover - depends on extras
    _orjson_dumps = None


def _dumps(obj) -> bytes:
    if _orjson_dumps is not None:
        return _orjson_dumps(obj)
    import json

    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _json(obj, status: int = 200):
    from starlette.responses import Response

    return Response(_dumps(obj), status_code=status, media_type="application/json")


def _payload_bytes(res: Result, **extra) -> bytes:
    """JSON built directly (values are plain str/int/float/None; FastAPI's generic encoder walk
    is skipped, which matters for rows with hundreds of head columns). orjson writes NaN/inf as
    null itself; the standard library needs them cleaned first."""
    cols = res.columns
    if _orjson_dumps is not None:
        rows = [dict(zip(cols, r)) for r in res.rows]
    else:
        rows = [{c: _clean(v) for c, v in zip(cols, r)} for r in res.rows]
    return _dumps({**extra, "count": len(rows), "truncated": res.truncated, "results": rows})


def _payload(res: Result, **extra):
    from starlette.responses import Response

    return Response(_payload_bytes(res, **extra), media_type="application/json")


class _ExactLookupFastPath:
    """Plain-ASGI answer for the commonest request, an exact look-up with default parameters
    (``GET /variants/{id}``, no query string, id of at most 300 characters): the same code and
    the same JSON bytes as the FastAPI route below, without its per-request parameter machinery
    (about 0.5 ms of CPU). Every other request goes to the FastAPI application."""

    def __init__(self, app, db: VariantDB):
        self.app, self.db = app, db
        self.state = app.state  # tests and tools reach app.state.db through the wrapper

    def __getattr__(self, name):  # the wrapper stands in for the FastAPI app (routes, openapi...)
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string") \
                and not scope.get("root_path"):
            path = scope["path"]
            vid = path[10:] if path.startswith("/variants/") else ""
            if vid and "/" not in vid and len(vid) <= 300:
                try:
                    res = self.db.lookup(vid, zero_based=False, heads=True)
                except QueryError as exc:
                    status, body = 400, _dumps({"detail": str(exc)})
                else:
                    if res.rows:
                        status, body = 200, _payload_bytes(res, query=vid)
                    else:
                        status, body = 404, _dumps({"detail": f"variant {vid[:100]!r} not in the database"})
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-length", str(len(body)).encode()),
                                        (b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_app(db_path: str | Path, *, max_results: int = 1000, max_region_bp: int = 5_000_000,
               explanations: str | Path | None = None):
    """Build the FastAPI application for ``db_path`` (opened read-only). ``explanations``: the
    side table of ``biointerp features explain`` (Parquet); the variant view then lists each
    variant's top SAE features."""
    try:
        from fastapi import FastAPI, HTTPException, Path as P, Query, Request
        from fastapi.exceptions import RequestValidationError
        from starlette.exceptions import HTTPException as StarletteHTTPException
        from starlette.responses import FileResponse, Response
    except ImportError as err:  # pragma: no cover - depends on extras
        raise ImportError("the server needs the `server` extra: pip install 'biointerp[server]'") from err

    from biointerp.db.browse import SORTS, Browser, Explanations, head_info

    db = VariantDB(db_path, concurrency=1)
    ex = Explanations(explanations) if explanations else None
    browser = Browser(db, max_bp=max_region_bp, explanations=ex)
    browser.calibration()  # one pass over the labelled rows at start-up, not in the first request
    app = FastAPI(
        title="biointerp variant database",
        version=str(db.metadata.get("biointerp_version")),
        description="Read-only look-ups of scored variants. Ids: chrom:pos:ref:alt (1-based; "
                    "`zero_based=true` for EVEE ids), contig aliases chr17/17 and chrM/MT. "
                    "The browser page is at `/`.",
    )
    app.state.db = db
    app.state.browser = browser

    @app.exception_handler(QueryError)
    async def _bad_query(_req: Request, exc: QueryError):
        return _json({"detail": str(exc)}, 400)

    @app.exception_handler(RequestValidationError)
    async def _bad_params(_req: Request, exc: RequestValidationError):
        errs = [{"loc": [str(x)[:100] for x in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200]}
                for e in exc.errors()]
        return _json({"detail": errs}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException):
        return _json({"detail": exc.detail}, exc.status_code)

    def heads_arg(heads: str | None) -> bool | list[str]:
        if heads is None or heads == "":
            return False
        if heads.lower() in ("all", "true", "1"):
            return True
        return [h.strip() for h in heads.split(",") if h.strip()]

    # -- the page ---------------------------------------------------------------------------
    page_files = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in page_files:  # a fixed list: no path handling of user text at all
            raise HTTPException(status_code=404, detail="no such file")
        return FileResponse(WEB / name, media_type=page_files[name], headers=SECURITY_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    # -- JSON API ---------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        """Liveness and database summary."""
        md = db.metadata
        return _json({"status": "ok", "rows": md.get("n_rows"), "build_date": md.get("build_date"),
                      "schema_version": md.get("schema_version"), "n_heads": len(db.heads),
                      "model": md.get("model"), "probe": md.get("probe")})

    @app.get("/heads")
    def heads_info(heads: str | None = Query("all", max_length=2000, description="'all' or comma list")):
        """Head columns with their metadata (display name, group, description, category, threshold)."""
        df = db.head_info(heads_arg(heads) or True)
        return _payload(Result(list(df.columns), list(df.itertuples(index=False, name=None))))

    @app.get("/variants/{variant_id}")
    async def variant(variant_id: str = P(..., max_length=300, description="e.g. chr17:43045712:T:C"),
                      zero_based: bool = Query(False, description="read the position as 0-based (EVEE ids)"),
                      heads: str | None = Query("all", max_length=2000, description="'all', '' or comma list")):
        """One variant by id (all columns by default)."""
        res = db.lookup(variant_id, zero_based=zero_based, heads=heads_arg(heads))
        if not res.rows:
            raise HTTPException(status_code=404, detail=f"variant {variant_id[:100]!r} not in the database")
        return _payload(res, query=variant_id)

    @app.get("/variants")
    async def variants(region: str = Query(..., max_length=100, description="chrom:start-end, 1-based inclusive"),
                       limit: int = Query(100, ge=1, le=max_results),
                       min_score: float | None = Query(None, allow_inf_nan=False),
                       max_score: float | None = Query(None, allow_inf_nan=False),
                       heads: str | None = Query(None, max_length=2000)):
        """Variants in a region (at most ``max_region_bp`` wide), in position order."""
        res = db.region(region, min_score=min_score, max_score=max_score, limit=limit, max_bp=max_region_bp,
                        heads=heads_arg(heads))
        return _payload(res, region=region)

    @app.get("/genes/{gene}")
    async def gene(gene: str = P(..., max_length=64),
                   top: int | None = Query(None, ge=1, le=max_results, description="highest scores first"),
                   limit: int = Query(100, ge=1, le=max_results),
                   min_score: float | None = Query(None, allow_inf_nan=False),
                   max_score: float | None = Query(None, allow_inf_nan=False),
                   heads: str | None = Query(None, max_length=2000)):
        """A gene's variants (``top=N``: N highest scores)."""
        res = db.gene(gene, top=top, limit=None if top else limit, min_score=min_score, max_score=max_score,
                      heads=heads_arg(heads))
        if not res.rows:
            raise HTTPException(status_code=404, detail=f"gene {gene[:64]!r} has no variants in the database")
        return _payload(res, gene=gene)

    @app.get("/search")
    async def search(q: str = Query(..., min_length=1, max_length=200, description="variant id, rsID, region or gene"),
                     limit: int = Query(100, ge=1, le=max_results)):
        """Free-text search: guesses whether ``q`` is a variant id, an rsID, a region or a gene."""
        kind, res = db.search(q, limit=limit, max_bp=max_region_bp)
        return _payload(res, kind=kind, q=q)

    # -- endpoints of the page ----------------------------------------------------------------
    @app.get("/api/info")
    async def info():
        """Database summary, head descriptions (name, display, group, description), sort keys."""
        md = db.metadata
        return _json({"rows": md.get("n_rows"), "build_date": md.get("build_date"), "model": md.get("model"),
                      "probe": md.get("probe"), "description": md.get("description"),
                      "schema_version": md.get("schema_version"), "columns": browser.list_columns,
                      "sorts": list(SORTS), "heads": head_info(db), "max_results": max_results,
                      "max_region_bp": max_region_bp,
                      "explanations": {"path": ex.path.name, "variants": ex.n_variants} if ex else None})

    @app.get("/api/search")
    async def page_search(q: str = Query(..., max_length=1000, description="variant id, rsID, gene or region"),
                          sort: str = Query("pos", max_length=40), order: str = Query("asc", max_length=4),
                          offset: int = Query(0, ge=0, le=10_000_000), limit: int = Query(50, ge=1, le=max_results)):
        """One page (sorted on the server) of what ``q`` selects, with the total count."""
        return _json(browser.search(q, sort=sort, order=order, offset=offset, limit=limit))

    @app.get("/api/points")
    async def page_points(q: str = Query(..., max_length=1000), max_points: int = Query(5000, ge=1, le=20000)):
        """Position, score and label of every variant of a gene or region (thinned evenly beyond
        ``max_points``), for the plot."""
        return _json(browser.points(q, max_points=max_points))

    @app.get("/api/variant/{variant_id}")
    async def page_variant(variant_id: str = P(..., max_length=300), zero_based: bool = Query(False)):
        """Every column and head of one variant, with the calibration reading of its score."""
        out = browser.variant(variant_id, zero_based=zero_based)
        if not out["count"]:
            raise HTTPException(status_code=404, detail=f"variant {variant_id[:100]!r} not in the database")
        return _json(out)

    @app.get("/api/calibration")
    async def calibration():
        """Observed share of pathogenic variants per score bin (labelled rows only)."""
        return _json(browser.calibration())

    return _ExactLookupFastPath(app, db)


def app_from_env():
    """App factory for worker processes: reads ``BIOINTERP_SERVE_*`` environment variables."""
    return create_app(os.environ["BIOINTERP_SERVE_DB"],
                      max_results=int(os.environ.get("BIOINTERP_SERVE_MAX_RESULTS", "1000")),
                      max_region_bp=int(os.environ.get("BIOINTERP_SERVE_MAX_REGION_BP", "5000000")),
                      explanations=os.environ.get("BIOINTERP_SERVE_EXPLANATIONS") or None)


def default_workers() -> int:
    """One worker per CPU, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8000, *, max_results: int = 1000,
          max_region_bp: int = 5_000_000, log_level: str = "warning", workers: int = 1,
          access_log: bool = False, explanations: str | Path | None = None) -> None:
    """Run the server with uvicorn (blocks). ``workers > 1`` starts that many processes."""
    import uvicorn

    opts = dict(host=host, port=port, log_level=log_level, access_log=access_log)
    if workers > 1:
        os.environ.update(BIOINTERP_SERVE_DB=str(Path(db_path).resolve()), BIOINTERP_SERVE_MAX_RESULTS=str(max_results),
                          BIOINTERP_SERVE_MAX_REGION_BP=str(max_region_bp),
                          BIOINTERP_SERVE_EXPLANATIONS=str(Path(explanations).resolve()) if explanations else "")
        uvicorn.run("biointerp.db.serve:app_from_env", factory=True, workers=workers, **opts)
    else:
        uvicorn.run(create_app(db_path, max_results=max_results, max_region_bp=max_region_bp,
                               explanations=explanations), **opts)
