"""legsmi's local web page for the clinic: two photos and four numbers in, an annotated estimate out.

``legsmi app`` serves one page and its API (FastAPI, uvicorn, Jinja2 templates; every
asset is in this package, nothing is fetched from the internet) on the loopback
interface. Modules:

* :mod:`.server`: the FastAPI application (page, ``POST /api/estimate``, ``GET /healthz``);
* :mod:`.uploads`: form fields checked, uploads capped in bytes and pixels and sniffed;
* :mod:`.models`: the models behind the page, and the default one trained once and cached;
* :mod:`.records`: results kept only with ``--save DIR`` (atomic files, one whole CSV);
* :mod:`.load`: the load benchmark (``legsmi app-load``).

See docs/app.md.
"""

#: Said on the page, in every API answer and on the printed record.
NOT_VALIDATED = ("Research software, not clinically validated: the estimate is not a diagnosis "
                 "and must not be used on its own for clinical decisions.")
