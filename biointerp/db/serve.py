"""Read-only HTTP JSON API over a variant database (FastAPI + uvicorn, ``server`` extra).

Endpoints: ``/health``, ``/heads`` (head metadata), ``/variants/{id}``, ``/variants?region=``,
``/genes/{gene}``, ``/search?q=``, plus FastAPI's ``/docs`` and ``/openapi.json``.
The database is opened with ``read_only=True``; every query is parameterized
(user text never reaches SQL text). Result sizes are capped; bad input answers
4xx with a JSON ``detail`` message.
"""

from __future__ import annotations

import math
from pathlib import Path

from biointerp.db.query import QueryError, Result, VariantDB


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _payload(res: Result, **extra):
    """JSON response built directly (values are plain str/int/float/None; FastAPI's generic
    encoder walk is skipped, which matters for rows with hundreds of head columns)."""
    from fastapi.responses import JSONResponse

    rows = [{c: _clean(v) for c, v in zip(res.columns, r)} for r in res.rows]
    return JSONResponse({**extra, "count": len(rows), "truncated": res.truncated, "results": rows})


def create_app(db_path: str | Path, *, max_results: int = 1000, max_region_bp: int = 5_000_000):
    """Build the FastAPI application for ``db_path`` (opened read-only)."""
    try:
        from fastapi import FastAPI, HTTPException, Path as P, Query, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
    except ImportError as err:  # pragma: no cover - depends on extras
        raise ImportError("the server needs the `server` extra: pip install 'biointerp[server]'") from err

    db = VariantDB(db_path)
    app = FastAPI(
        title="biointerp variant database",
        version=str(db.metadata.get("biointerp_version")),
        description="Read-only look-ups of scored variants. Ids: chrom:pos:ref:alt (1-based; "
                    "`zero_based=true` for EVEE ids), contig aliases chr17/17 and chrM/MT.",
    )
    app.state.db = db

    @app.exception_handler(QueryError)
    async def _bad_query(_req: Request, exc: QueryError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _bad_params(_req: Request, exc: RequestValidationError):
        errs = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:200]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errs})

    def heads_arg(heads: str | None) -> bool | list[str]:
        if heads is None or heads == "":
            return False
        if heads.lower() in ("all", "true", "1"):
            return True
        return [h.strip() for h in heads.split(",") if h.strip()]

    @app.get("/health")
    def health() -> dict:
        """Liveness and database summary."""
        md = db.metadata
        return {"status": "ok", "rows": md.get("n_rows"), "build_date": md.get("build_date"),
                "schema_version": md.get("schema_version"), "n_heads": len(db.heads),
                "model": md.get("model"), "probe": md.get("probe")}

    @app.get("/heads")
    def heads_info(heads: str | None = Query("all", max_length=2000, description="'all' or comma list")):
        """Head columns with their metadata (display name, group, description, category, threshold)."""
        df = db.head_info(heads_arg(heads) or True)
        return _payload(Result(list(df.columns), list(df.itertuples(index=False, name=None))))

    @app.get("/variants/{variant_id}")
    def variant(variant_id: str = P(..., max_length=300, description="e.g. chr17:43045712:T:C"),
                zero_based: bool = Query(False, description="read the position as 0-based (EVEE ids)"),
                heads: str | None = Query("all", max_length=2000, description="'all', '' or comma list")):
        """One variant by id (all columns by default)."""
        res = db.lookup(variant_id, zero_based=zero_based, heads=heads_arg(heads))
        if not res.rows:
            raise HTTPException(status_code=404, detail=f"variant {variant_id[:100]!r} not in the database")
        return _payload(res, query=variant_id)

    @app.get("/variants")
    def variants(region: str = Query(..., max_length=100, description="chrom:start-end, 1-based inclusive"),
                 limit: int = Query(100, ge=1, le=max_results),
                 min_score: float | None = Query(None, allow_inf_nan=False),
                 max_score: float | None = Query(None, allow_inf_nan=False),
                 heads: str | None = Query(None, max_length=2000)):
        """Variants in a region (at most ``max_region_bp`` wide), in position order."""
        res = db.region(region, min_score=min_score, max_score=max_score, limit=limit, max_bp=max_region_bp,
                        heads=heads_arg(heads))
        return _payload(res, region=region)

    @app.get("/genes/{gene}")
    def gene(gene: str = P(..., max_length=64),
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
    def search(q: str = Query(..., min_length=1, max_length=200, description="variant id, rsID, region or gene"),
               limit: int = Query(100, ge=1, le=max_results)):
        """Free-text search: guesses whether ``q`` is a variant id, an rsID, a region or a gene."""
        kind, res = db.search(q, limit=limit, max_bp=max_region_bp)
        return _payload(res, kind=kind, q=q)

    return app


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8000, *, max_results: int = 1000,
          max_region_bp: int = 5_000_000, log_level: str = "info") -> None:
    """Run the API with uvicorn (blocks)."""
    import uvicorn

    app = create_app(db_path, max_results=max_results, max_region_bp=max_region_bp)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
