"""Identity: agents trade an OIDC token (Entra ID, GitHub Actions, ...) for a short-lived
OpenSSH user certificate signed by the bastion's user CA.

Modules, one job each: ``config`` (the ``[ca]``/``[oidc]`` sections), ``ca`` (CA key, signing,
agent key policy), ``jwks`` (issuer discovery and signing keys), ``tokens`` (fail-closed token
validation), ``grants`` (claims -> principals and key ID), ``store`` (SQLite: serials, issued
certificates, revocations, replay cache), ``revocation`` (fast synchronous login-time check),
``issuer`` (the issuance use case), ``http`` (aiohttp routes), ``login`` (the client) and ``cli``.
"""
