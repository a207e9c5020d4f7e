"""``harness serve``: a harness backend behind a KServe v2 (Open Inference Protocol) endpoint, on MLServer.

:mod:`harness.serving.protocol` holds what the server and the ``v2`` client backend agree on (tensor names,
image decoding, the response parameters that carry the server's stage times) and imports no server
framework; :mod:`harness.serving.runtime` is the MLServer model class that hosts a real backend instance;
:mod:`harness.serving.server` starts MLServer with the harness's safety defaults (docs/serving.md).
"""
