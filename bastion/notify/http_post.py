"""One JSON POST with a hard timeout, no redirects, and errors as one-line DeliveryErrors."""

from __future__ import annotations

import aiohttp

from bastion.notify.base import DeliveryError

USER_AGENT = "bastion-notify/1"


class JsonPoster:
    """A lazily created aiohttp session; ``post`` raises DeliveryError unless the answer is 2xx."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # a backstop only: the hub bounds each attempt at exactly ``timeout``
                timeout=aiohttp.ClientTimeout(total=self.timeout + 5),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str], what: str) -> None:
        try:
            async with self._client().post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,  # never replay a signed body (or a secret URL) elsewhere
            ) as response:
                if not 200 <= response.status < 300:
                    raise DeliveryError(f"{what} answered HTTP {response.status}")
                await response.read()
        except TimeoutError:
            raise DeliveryError(f"{what} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{what} unreachable: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
