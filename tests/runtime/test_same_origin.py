"""A browser page served by the proxy itself (the web UI) reaches the proxy: a request whose
Origin or Referer is the proxy's own, with Sec-Fetch-Site: same-origin, passes the cross-site
guard (runtime/serve/origin.py), while another site's page is still refused."""

from __future__ import annotations

from pathlib import Path

from .harness import Site, serving


async def test_a_same_origin_browser_request_passes_and_a_cross_site_one_is_refused(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        own = proxy.server.url.rstrip("/")
        browser = {"Origin": own, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
        async with await proxy.chat("m", headers=browser) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["served_by"] == "m"
        async with proxy.client.get("/running", headers=browser) as response:
            assert response.status == 200
        # A GET navigation carries a Referer, not an Origin.
        referred = {"Referer": f"{own}/ui/models", "Sec-Fetch-Site": "same-origin"}
        async with proxy.client.get("/running", headers=referred) as response:
            assert response.status == 200
        elsewhere = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
        async with await proxy.chat("m", headers=elsewhere) as response:
            assert response.status == 403
