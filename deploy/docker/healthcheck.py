"""Container health check: GET /healthz on this node's HTTP plane (which also pings the database).

Reads the node's own settings (environment and config.toml) for the port and whether TLS is on, so the check
follows `DSNODE_HTTP_PORT` and `DSNODE_TLS_CERT_FILE` instead of assuming http://127.0.0.1:8000. Exit 0 healthy,
1 not.
"""

import ssl
import sys
import urllib.request

from node.settings import Settings


def main() -> int:
    settings = Settings()
    tls = settings.tls_cert_file is not None and settings.tls_key_file is not None
    # Loopback call: the certificate names the public host, not 127.0.0.1, so it is not verified here.
    context = ssl._create_unverified_context() if tls else None  # noqa: S323
    url = f"{'https' if tls else 'http'}://127.0.0.1:{settings.http_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 (fixed scheme)
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
