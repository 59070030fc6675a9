"""The response object of a relayed reply, and the one-write send of a whole one.

A reply the lean upstream client read whole before the relay began (most
non-streamed answers) does not need ``StreamResponse``'s general machinery:
``prepare`` (head preparation for cookies, compression, chunking and every
version), then ``write`` and ``write_eof`` each through the writer's checks.
Skipping it measured at 1 to 2 % of the proxy's CPU for a small reply
(bench/results/issue14-levers.md).
``Relayed.send_whole`` prepares the head as ``prepare`` would for this one
case (HTTP/1.1, a sized body, no compression, no cookies), runs the same
``on_response_prepare`` signals at the same point, and hands head and body to
the writer together.

Warning:
    Reproduces ``StreamResponse._prepare_headers`` for that case and sets the
    state ``write_eof`` leaves (``_eof_sent``, ``_body_length``): aiohttp 3.x
    internals, which the version pin keeps stable.
    tests/server/test_leanfront.py and tests/proxy/test_relayed.py check the
    bytes against aiohttp's own.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.helpers import must_be_empty_body, rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11

from authproxy.proxy.request import ProxyRequest, run_prepare_hook


class Relayed(web.StreamResponse):
    """A relayed reply whose head waits for the first body bytes, when they are here.

    aiohttp's ``StreamResponse`` sends its head on ``prepare`` by itself (one
    ``send`` for the head, one per chunk); a small reply that came whole is
    then sent in one ``send`` instead of two. aiohttp's ``Response`` does the
    same (``_send_headers_immediately``, aiohttp 3.14 internals, pinned).
    """

    _send_headers_immediately = False

    def sends_whole(self, request: ProxyRequest, body: bytes) -> bool:
        """Tell whether ``send_whole`` may send ``body`` as ``prepare`` would have.

        Only for HTTP/1.1, a reply that may have a body, and a
        ``Content-Length`` that is the body's: anything else (a chunked
        upstream reply, HEAD, 204, 304, HTTP/1.0) takes ``prepare``'s path.
        """
        return (
            self._payload_writer is None
            and not self._eof_sent
            and request.version == HttpVersion11
            and not must_be_empty_body(request.method, self.status)
            # The upstream's digits as llhttp checked them (no int() per reply).
            and self.headers.get(hdrs.CONTENT_LENGTH) == str(len(body))
        )

    async def send_whole(self, request: ProxyRequest, body: bytes) -> None:
        """Send the head and ``body`` in one write, then end the reply.

        Raises:
            ConnectionError: the client's connection is closing or gone.
        """
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = request.keep_alive
        self._keep_alive = keep_alive
        # StreamResponse._prepare_headers, for a sized HTTP/1.1 body.
        headers = self.headers
        if body:
            headers.setdefault(hdrs.CONTENT_TYPE, "application/octet-stream")
        if hdrs.DATE not in headers:
            headers[hdrs.DATE] = rfc822_formatted_time()
        headers.setdefault(hdrs.SERVER, SERVER_SOFTWARE)
        if not keep_alive and hdrs.CONNECTION not in headers:
            headers[hdrs.CONNECTION] = "close"
        # The app's signals see the prepared head, as in StreamResponse._start.
        await run_prepare_hook(request, self)
        writer = request.writer
        await writer.write_headers(f"HTTP/1.1 {self.status} {self.reason}", headers)
        await writer.write_eof(body)
        # What write_eof leaves: prepare and write_eof are no-ops from here.
        self._eof_sent = True
        self._body_length = writer.output_size
