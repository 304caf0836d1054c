"""Labelled masking corpus, generated from a seed (no secret literals are stored).

``build_corpus(seed)`` returns records of realistic terminal output: positives carry the fake
secrets they contain (every default rule has some), negatives are look-alikes that must pass
unchanged (git SHAs, GUIDs, resource IDs, integrity hashes, public keys, certificates,
placeholders ...). ``evaluate`` runs a masker over them and reports recall and false positives.
Also used by bench/bench_masking.py to build realistic traffic.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

B64 = string.ascii_letters + string.digits + "+/"
B64U = string.ascii_letters + string.digits + "_-"
B62 = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B32L = "abcdefghijklmnopqrstuvwxyz234567"
UP32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")


@dataclass
class Record:
    kind: str  # "pos" or "neg"
    rule: str  # rule expected to fire (positives) or the look-alike family (negatives)
    text: bytes
    secrets: list[bytes] = field(default_factory=list)


class Gen:
    """Fake secret generators of the right shape."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def pick(self, *opts: str) -> str:
        return self.r.choice(opts)

    def ident88(self, sig: str) -> str:
        return self.s(B64, 76) + sig + self.s(B64, 5) + self.pick("A", "Q", "g", "w") + "=="

    def ident44(self, sig: str) -> str:
        return self.s(B64, 33) + sig + self.pick(*"ABCDEFGHIJKLMNOP") + self.s(B64, 5) + "="

    def key88(self) -> str:
        return self.s(B64, 85) + self.pick("A", "Q", "g", "w") + "=="

    def key44(self) -> str:
        return self.s(B64, 42) + self.pick(*"AEIMQUYcgkosw048") + "="

    def cask(self, prov: str) -> str:
        return self.s(B62, 52) + "JQQJ9" + self.pick("9", "D") + self.s(B62, 18) + prov + \
            self.s(B62, 4)

    def password(self) -> str:
        return self.s(string.ascii_letters, 4) + self.s(string.digits, 3) + \
            self.pick("!", "#", "%", "@", "^") + self.s(B62, self.r.randint(4, 12))

    def jwt(self) -> str:
        def part(obj: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
        head = part({"alg": "RS256", "typ": "JWT", "kid": self.s(B62, 12)})
        body = part({"aud": "https://management.azure.com", "oid": str(uuid.UUID(
            int=self.r.getrandbits(128))), "exp": self.r.randint(1_700_000_000, 1_900_000_000),
            "scp": "user_impersonation", "nonce": self.s(B62, 16)})
        return f"{head}.{body}.{self.s(B64U, 86)}"

    def pem_body(self, lines: int = 8) -> list[str]:
        return [self.s(B64, 64) for _ in range(lines)] + [self.s(B64, 20) + "=="]

    def sha(self) -> str:
        return self.s(HEX, 40)

    def guid(self) -> str:
        return str(uuid.UUID(int=self.r.getrandbits(128)))


# --- contexts: (secret) -> line(s) ---------------------------------------------------------------

def _color_split(g: Gen, s: str) -> str:
    """grep --color style highlighting of a piece inside the secret."""
    i = g.r.randint(1, max(1, len(s) - 4))
    j = min(len(s), i + g.r.randint(2, 8))
    return f"{s[:i]}\x1b[01;31m\x1b[K{s[i:j]}\x1b[m\x1b[K{s[j:]}"


def prefix_contexts(g: Gen, s: str) -> list[str]:
    host = g.pick("vm-build-01", "aks-node-3", "jump-eus2")
    return [
        f"2026-11-24T10:0{g.r.randint(0, 9)}:11Z {host} deploy[812]: using credential {s} "
        "for upload\n",
        f'{{\n  "name": "ci-upload",\n  "value": "{s}",\n  "enabled": true\n}}\n',
        f"\x1b[35m\x1b[Kdeploy/.env\x1b[m\x1b[K\x1b[36m\x1b[K:\x1b[m\x1b[K"
        f"UPLOAD_CRED={_color_split(g, s)}\n",
        f"- name: upload\n  run: ./push.sh --cred {s}\n",
        f"{host}:~$ echo {s}\r\n{s}\r\n{host}:~$ ",
    ]


def _ctx(*templates: str) -> Callable[[Gen, str], list[str]]:
    return lambda g, s: [t.format(s=s, guid=g.guid(), acct=g.s(string.ascii_lowercase, 10))
                         for t in templates]


AZ_JSON = ('[\n  {{\n    "keyName": "key1",\n    "permissions": "FULL",\n'
           '    "value": "{s}"\n  }}\n]\n')


def positives(g: Gen) -> list[Record]:
    recs: list[Record] = []

    def add(rule: str, secret: str, texts: list[str], extra: list[str] | None = None) -> None:
        for t in texts:
            recs.append(Record("pos", rule, t.encode(), [secret.encode(), *(
                e.encode() for e in extra or [])]))

    ident88 = {"azure-storage-key-identifiable": "+ASt", "azure-cosmosdb-key-identifiable": "ACDb",
               "azure-batch-key-identifiable": "+ABa", "azure-apim-key-identifiable": "APIM",
               "azure-ml-key-identifiable": "+AMC"}
    for rule, sig in ident88.items():
        for _ in range(2):
            k = g.ident88(sig)
            add(rule, k, [*prefix_contexts(g, k), AZ_JSON.format(s=k)])
    ident44 = {"azure-service-bus-key-identifiable": "+ASb",
               "azure-event-hubs-key-identifiable": "+AEh", "azure-relay-key-identifiable": "+ARm",
               "azure-iot-key-identifiable": "AIoT", "azure-redis-key-identifiable": "AzCa",
               "azure-event-grid-key-identifiable": "AZEG"}
    for rule, sig in ident44.items():
        for _ in range(2):
            k = g.ident44(sig)
            add(rule, k, prefix_contexts(g, k))
    for _ in range(2):
        k = g.s(B64U, 44) + "AzFu" + g.s(B64U, 5) + g.pick("A", "Q", "g", "w") + "=="
        add("azure-function-key-identifiable", k, prefix_contexts(g, k))
        k = g.s(B62, 42) + "AzSe" + g.pick(*"ABCD") + g.s(B62, 5)
        add("azure-search-key-identifiable", k, prefix_contexts(g, k))
        k = g.s(B64, 42) + "+ACR" + g.pick(*"ABCD") + g.s(B64, 5)
        add("azure-container-registry-key-identifiable", k, prefix_contexts(g, k))
        for rule, prov in (("azure-devops-pat", "AZDO"), ("azure-ai-services-key", "ACOG"),
                           ("azure-cask-key", "AZMP")):
            k = g.cask(prov)
            add(rule, k, prefix_contexts(g, k))
        k = g.s(B62, 3) + g.pick("7", "8") + "Q~" + g.s(B62 + "_~.-", 34)
        add("azure-entra-client-secret", k, [
            *prefix_contexts(g, k),
            f'{{\n  "appId": "{g.guid()}",\n  "password": "{k}",\n  "tenant": "{g.guid()}"\n}}\n'])
    for _ in range(3):
        k = g.key88()
        acct = g.s(string.ascii_lowercase, 12)
        add("azure-cosmosdb-connection-string", k, [
            f"AccountEndpoint=https://{acct}.documents.azure.com:443/;AccountKey={k};\n"])
        add("azure-storage-key", k, [
            f"DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={k};"
            "EndpointSuffix=core.windows.net\n",
            f"$ az storage blob list --account-name {acct} --account-key {k} -o table\n",
            f"export AZURE_STORAGE_KEY='{k}'\n"])
        add("azure-legacy-64-byte-key", k, [AZ_JSON.format(s=k), f"{acct}\tkey1\t{k}\tFULL\n"])
        k44 = g.key44()
        ns = g.s(string.ascii_lowercase, 8)
        add("azure-shared-access-key", k44, [
            f"Endpoint=sb://{ns}.servicebus.windows.net/;SharedAccessKeyName="
            f"RootManageSharedAccessKey;SharedAccessKey={k44}\n",
            f"HostName={ns}.azure-devices.net;DeviceId=dev1;SharedAccessKey={k44}\n",
            f'  "primaryKey": "{k44}",\n'])
        sig = quote(g.s(B64, 43) + "=", safe="")
        add("azure-sas-signature", sig, [
            f"https://{acct}.blob.core.windows.net/backups/db.bak?sv=2022-11-02&ss=b&srt=co"
            f"&sp=rl&se=2026-12-01T00:00:00Z&st=2026-11-24T00:00:00Z&spr=https&sig={sig}\n",
            f"SharedAccessSignature sr={ns}.azure-devices.net&sig={sig}&se=1767225600&skn=owner\n",
            f"\x1b]8;;https://{acct}.blob.core.windows.net/c/x?sv=2022-11-02&sig={sig}\x1b\\"
            f"download\x1b]8;;\x1b\\\n"])
        sec = g.s(B64, 43) + "="
        add("azure-app-configuration-secret", sec, [
            f"Endpoint=https://{ns}.azconfig.io;Id={g.s(B62, 4)}-l0-s0:{g.s(B62, 20)};"
            f"Secret={sec}\n"])
        pw = g.password()
        add("azure-connection-string-password", pw, [
            f"Server=tcp:{ns}.database.windows.net,1433;Initial Catalog=app;User ID=sqladmin;"
            f"Password={pw};Encrypt=True;\n",
            f"host={ns}.postgres.database.azure.com port=5432 dbname=app user=pg Pwd={pw};\n"])
        rk = g.key44()
        add("azure-redis-connection-password", rk, [
            f"{ns}.redis.cache.windows.net:6380,password={rk},ssl=True,abortConnect=False\n"])
        fk = g.s(B64U, 54) + "=="
        add("azure-function-key", fk, [
            f"curl 'https://{ns}.azurewebsites.net/api/HttpTrigger?code={fk}'\n",
            f'{{"masterKey": "{fk}", "functionKeys": {{}}}}\n'])
        pw = g.password()
        add("azure-publishing-profile-password", pw, [
            f'<publishProfile profileName="{ns} - Web Deploy" publishMethod="MSDeploy" '
            f'userName="${ns}" userPWD="{pw}" destinationAppUrl="http://{ns}.azurewebsites.net"/>\n'])
        pw = g.password()
        add("azure-cli-secret-flag", pw, [
            f"$ az vm create -g rg1 -n {ns} --image Ubuntu2204 --admin-username azureuser "
            f"--admin-password '{pw}'\n",
            f"az keyvault secret set --vault-name kv-{ns} --name db-pass --value {pw}\n"])
        pat = g.s(B32L, 52)
        add("azure-devops-pat-legacy", pat, [f"AZURE_DEVOPS_EXT_PAT={pat}\n"])
        hk = g.s(HEX, 32)
        add("azure-hex-32-key", hk, [
            f'{{\n  "key1": "{hk}",\n  "key2": "{g.s(HEX, 32)}"\n}}\n',
            f"curl -H 'Ocp-Apim-Subscription-Key: {hk}' https://{ns}.azure-api.net/v1\n"],
            )
    # --- other providers ---
    for _ in range(2):
        kid = g.pick("AKIA", "ASIA") + g.s(UP32, 16)
        sk = g.s(B64, 40)
        add("aws-access-key-id", kid, prefix_contexts(g, kid))
        add("aws-secret-access-key", sk, [
            f"[default]\naws_access_key_id = {kid}\naws_secret_access_key = {sk}\n",
            f'{{"AccessKeyId": "{kid}", "SecretAccessKey": "{sk}"}}\n'], [kid])
        st = "IQoJb3JpZ2luX2Vj" + g.s(B64, 300)
        add("aws-session-token", st, [f"aws_session_token = {st}\n"])
        for rule, tok in (
            ("aws-bedrock-api-key", "ABSK" + g.s(B64, 100)),
            ("gcp-api-key", "AIza" + g.s(B64U, 35)),
            ("google-oauth-access-token", "ya29." + g.s(B64U, 120)),
            ("google-oauth-client-secret", "GOCSPX-" + g.s(B64U, 28)),
            ("github-token", g.pick("ghp_", "gho_", "ghs_") + g.s(B62, 36)),
            ("github-fine-grained-pat", "github_pat_" + g.s(B62, 22) + "_" + g.s(B62, 59)),
            ("gitlab-token", g.pick("glpat-", "glrt-", "gldt-") + g.s(B64U, 20)),
            ("slack-token", g.pick("xoxb-", "xoxp-") + g.s(string.digits, 12) + "-" +
             g.s(string.digits, 13) + "-" + g.s(B62, 24)),
            ("slack-app-token", "xapp-1-A" + g.s(UP32, 10) + "-" + g.s(string.digits, 13) + "-" +
             g.s(HEX, 64)),
            ("stripe-key", g.pick("sk_live_", "rk_test_") + g.s(B62, 32)),
            ("stripe-webhook-secret", "whsec_" + g.s(B62, 32)),
            ("openai-api-key", "sk-proj-" + g.s(B64U, 74) + "T3BlbkFJ" + g.s(B64U, 74)),
            ("openai-api-key-legacy", "sk-" + g.s(B62, 20) + "T3BlbkFJ" + g.s(B62, 20)),
            ("anthropic-api-key", "sk-ant-api03-" + g.s(B64U, 93) + "AA"),
            ("huggingface-token", "hf_" + g.s(string.ascii_letters, 34)),
            ("npm-token", "npm_" + g.s(B62, 36)),
            ("pypi-token", "pypi-AgEIcHlwaS5vcmc" + g.s(B64U, 70)),
            ("nuget-api-key", "oy2" + g.s(string.ascii_lowercase + string.digits, 43)),
            ("docker-hub-pat", "dckr_pat_" + g.s(B64U, 27)),
            ("databricks-token", "dapi" + g.s(HEX, 32)),
            ("digitalocean-token", "dop_v1_" + g.s(HEX, 64)),
            ("sendgrid-api-key", "SG." + g.s(B64U, 22) + "." + g.s(B64U, 43)),
            ("hashicorp-vault-token", "hvs." + g.s(B64U, 90)),
            ("terraform-cloud-token", g.s(B62, 14) + ".atlasv1." + g.s(B64U, 67)),
            ("age-secret-key", "AGE-SECRET-KEY-1" + g.s("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)),
            ("shopify-token", "shpat_" + g.s(HEX, 32)),
            ("grafana-token", "glsa_" + g.s(B62, 32) + "_" + g.s(HEX, 8)),
            ("sentry-token", "sntryu_" + g.s(HEX, 64)),
            ("heroku-api-key", "HRKU-AA" + g.s(B64U, 58)),
            ("pulumi-token", "pul-" + g.s(HEX, 40)),
            ("doppler-token", "dp.pt." + g.s(B62, 43)),
            ("telegram-bot-token", g.s(string.digits, 9) + ":AA" + g.s(B64U, 33)),
            ("mailchimp-api-key", g.s(HEX, 32) + "-us" + str(g.r.randint(1, 20))),
            ("linear-api-key", "lin_api_" + g.s(B62, 40)),
            ("jwt", g.jwt()),
        ):
            add(rule, tok, prefix_contexts(g, tok))
        hook = g.s(UP32, 10) + "/B" + g.s(UP32, 10) + "/" + g.s(B62, 24)
        add("slack-webhook", hook, [f"curl -X POST https://hooks.slack.com/services/T{hook}\n"])
        jwt = g.jwt()
        add("jwt", jwt, [
            f'{{\n  "accessToken": "{jwt}",\n  "expiresOn": "2026-11-24 11:00:00.000000",\n'
            f'  "subscription": "{g.guid()}",\n  "tokenType": "Bearer"\n}}\n'])
        body = g.pem_body(10)
        inline = "\\n".join(["-----BEGIN PRIVATE KEY-----", *body, "-----END PRIVATE KEY-----", ""])
        add("gcp-service-account-private-key", body[3], [
            f'{{\n  "type": "service_account",\n  "project_id": "proj-{g.s(HEX, 6)}",\n'
            f'  "private_key_id": "{g.sha()}",\n  "private_key": "{inline}",\n'
            f'  "client_email": "ci@proj.iam.gserviceaccount.com"\n}}\n'], body[:-1])
        add("pem-private-key-inline", body[5], [f"KEY=\"{inline}\"\n"], body[:-1])
        pem = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"])
        b64pem = base64.b64encode(pem.encode()).decode()
        add("pem-private-key-base64", b64pem, [
            f"users:\n- name: clusterUser\n  user:\n    client-key-data: {b64pem}\n"])
        add("pem-private-key", body[0], [
            f"$ cat ~/.ssh/id_rsa\n{pem}\n$ ",
            "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *body,
                       "-----END OPENSSH PRIVATE KEY-----", ""]),
            "\r\n".join(["-----BEGIN EC PRIVATE KEY-----", *body[:3],
                         "-----END EC PRIVATE KEY-----", ""])], body[:-1])
        add("putty-private-key", body[1], ["\n".join([
            "PuTTY-User-Key-File-3: ssh-rsa", "Encryption: none", "Comment: imported",
            "Public-Lines: 2", g.s(B64, 64), g.s(B64, 20), "Private-Lines: 3", body[0], body[1],
            body[2], "Private-MAC: " + g.s(HEX, 64), ""])], body[:3])
        pw = g.password()
        user = g.pick("app", "admin", "svc_ci")
        add("url-credentials", pw, [
            f"DATABASE_URL=postgres://{user}:{pw}@db.internal:5432/app\n",
            f"origin\thttps://{user}:{pw}@dev.azure.com/org/proj/_git/repo (fetch)\n",
            f"mongodb+srv://{user}:{pw}@cluster0.abcd.mongodb.net/?retryWrites=true\n"])
        tok = g.s(B64U, 40)
        add("http-auth-header", tok, [f"> Authorization: token {tok}\r\n",
                                       f'{{"headers": {{"Authorization": "Basic {tok}"}}}}\n'])
        tok = g.s(B64U, 48)
        add("bearer-token", tok, [f"curl -sS -H 'X-Trace: 1' -H \"Bearer {tok}\" https://api\n"])
        tok = g.s(B62, 32)
        add("api-key-header", tok, [f"x-api-key: {tok}\n", f"PRIVATE-TOKEN: {tok}\n"])
        pw = g.password()
        add("cli-password-flag", pw, [
            f"mysql -h db.internal -u root -p{pw} app < dump.sql\n",
            f"  1042  sshpass -p {pw} ssh admin@10.0.0.4\n",
            f"sqlcmd -S {g.s(string.ascii_lowercase, 6)}.database.windows.net -U sa -P {pw}\n"])
        add("netrc-password", pw, [f"machine api.github.com login ci password {pw}\n"])
        auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
        add("docker-config-auth", auth, [
            f'{{\n  "auths": {{\n    "myreg.azurecr.io": {{\n      "auth": "{auth}"\n'
            '    }\n  }\n}\n'])
        pw, tok = g.password(), g.s(B62, 40)
        add("generic-secret-assignment", pw, [
            f"DB_PASSWORD={pw}\n", f"  password: \"{pw}\"\n", f'    "client_secret": "{pw}",\n',
            f"spring.datasource.password={pw}\n", f"SECRET_KEY='{pw}'\n"])
        add("generic-secret-assignment", tok, [f"GH_TOKEN={tok}\n", f"api_key: {tok}\n",
                                               f"refresh_token={tok}&grant_type=refresh\n"])
        # structural: Kubernetes Secret data and Key Vault values
        v1, v2 = g.password(), g.s(B62, 24)
        e1, e2 = base64.b64encode(v1.encode()).decode(), base64.b64encode(v2.encode()).decode()
        add("kubernetes-secret-data", e1, [
            f"apiVersion: v1\ndata:\n  db-pass: {e1}\n  tls.key: {e2}\nkind: Secret\n"
            f"metadata:\n  name: db-creds\n  namespace: default\ntype: Opaque\n",
            f'{{\n    "apiVersion": "v1",\n    "data": {{\n        "db-pass": "{e1}",\n'
            f'        "tls.key": "{e2}"\n    }},\n    "kind": "Secret"\n}}\n'], [e2])
        add("kubernetes-secret-data", v1, [f"stringData:\n  db-pass: {v1}\ntype: Opaque\n"])
        kv = g.password() + g.s(B62, 6)
        add("azure-key-vault-secret-value", kv, [
            f'{{\n  "attributes": {{\n    "enabled": true\n  }},\n  "contentType": null,\n'
            f'  "id": "https://kv-{g.s(HEX, 6)}.vault.azure.net/secrets/db-pass/{g.s(HEX, 32)}",\n'
            f'  "kid": null,\n  "managed": null,\n  "name": "db-pass",\n  "tags": {{}},\n'
            f'  "value": "{kv}"\n}}\n'])
    return recs


# --- negatives ----------------------------------------------------------------------------------

def negatives(g: Gen) -> list[Record]:
    recs: list[Record] = []

    def add(family: str, text: str) -> None:
        recs.append(Record("neg", family, text.encode()))

    for _ in range(12):
        add("git-log", "".join(
            f"\x1b[33mcommit {g.sha()}\x1b[m\nAuthor: Dev <dev@example.org>\nDate:   Mon Nov 23\n\n"
            f"    fix: handle retries ({g.s(HEX, 7)})\n\n" for _ in range(3)))
        add("git-short", f"{g.s(HEX, 7)} (HEAD -> main, origin/main) Merge pull request #"
            f"{g.r.randint(1, 999)} from org/feature\n")
        add("guids", f"{g.guid()}  {g.guid()}  Enabled  AzureCloud\n")
        sub, rg = g.guid(), "rg-" + g.s(string.ascii_lowercase, 6)
        add("resource-id", f'{{\n  "id": "/subscriptions/{sub}/resourceGroups/{rg}/providers/'
            f'Microsoft.Compute/virtualMachines/vm{g.r.randint(1, 99)}",\n  "location": '
            f'"westeurope",\n  "tenantId": "{g.guid()}",\n  "vmId": "{g.guid()}"\n}}\n')
        add("package-lock", f'    "node_modules/{g.s(string.ascii_lowercase, 6)}": {{\n'
            f'      "version": "1.{g.r.randint(0, 20)}.0",\n      "resolved": "https://registry.'
            f'npmjs.org/x/-/x-1.0.0.tgz",\n      "integrity": "sha512-{g.key88()}"\n    }},\n')
        add("ssh-public-key", f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{g.s(B64, 500)}== "
            f"azureuser@vm\n")
        add("ssh-ed25519", f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{g.s(B64, 43)} ci@build\n")
        add("certificate", "\n".join(["-----BEGIN CERTIFICATE-----", *g.pem_body(12),
                                      "-----END CERTIFICATE-----", ""]))
        add("docker-pull", f"{g.s(HEX, 12)}: Pull complete\nDigest: sha256:{g.s(HEX, 64)}\n"
            f"Status: Downloaded newer image for mcr.microsoft.com/dotnet/aspnet:8.0\n")
        add("go-sum", f"github.com/{g.s(string.ascii_lowercase, 6)}/lib v1.2.3 h1:"
            f"{g.s(B64, 43)}=\n")
        add("ls-color", f"drwxr-xr-x  2 azureuser azureuser 4096 Nov 24 10:00 \x1b[01;34m"
            f"{g.s(string.ascii_lowercase, 8)}\x1b[0m\n-rw-r--r--  1 azureuser azureuser  220 Nov"
            f" 24 10:00 .bash_logout\n")
    placeholders = ["${DB_PASSWORD}", "<redacted>", "****", "changeme", "$SECRET",
                    "{{ .Values.pw }}", "<your-password>", "REDACTED", "xxxxxxxx", "%PASSWORD%",
                    "(sensitive value)"]
    for ph in placeholders:
        add("placeholder", f"DB_PASSWORD={ph}\n")
        add("placeholder", f"  password: {ph}\n")
        add("placeholder", f'  "client_secret": "{ph}",\n')
        add("placeholder", f"DATABASE_URL=postgres://app:{ph}@db:5432/app\n")
        add("placeholder", f"Authorization: Bearer {ph}\n")
        add("placeholder", f"AccountKey={ph};EndpointSuffix=core.windows.net\n")
    benign = [
        "PWD=/home/azureuser/src\nOLDPWD=/home/azureuser\nPATH=/usr/local/bin:/usr/bin:/bin\n",
        "SHELL=/bin/bash\nTERM=xterm-256color\nLANG=C.UTF-8\nHOME=/home/azureuser\n",
        "azureuser@vm-build-01:~$ ls -la\r\n", "$ pwd\n/home/azureuser\n",
        "Password for 'https://dev.azure.com': \n", "[sudo] password for azureuser: \n",
        "Enter passphrase for key '/home/azureuser/.ssh/id_ed25519': \n",
        "  secretName: db-creds\n  tokenTtl: 3600\n  passwordPolicy: strict\n",
        '{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599}\n',
        '"usage": {"prompt_tokens": 812, "completion_tokens": 90, "total_tokens": 902}\n',
        "kind: Secret\nmetadata:\n  name: tls-cert\ntype: kubernetes.io/tls\n",
        "apiVersion: v1\ndata:\n  LOG_LEVEL: debug\n  PORT: \"8080\"\n  FEATURE_X: \"true\"\n"
        "kind: ConfigMap\n",
        "INFO  [alembic.runtime.migration] Running upgrade 4f2a -> 9b1c, add token column\n",
        "Successfully installed azure-identity-1.19.0 msal-1.31.1 cryptography-43.0.3\n",
        "Traceback (most recent call last):\n  File \"app.py\", line 12, in <module>\n"
        "    token = get_token()\nKeyError: 'AZURE_CLIENT_SECRET'\n",
        "if token == expected_token:\n    return secret_store.get(name)\n",
        "NAME                      READY   STATUS    RESTARTS   AGE\napi-7d9f8b6c5d-x2x9q   "
        "1/1     Running   0          3d\n",
        "Name            ResourceGroup    Location    Zones\n--------------  ---------------  "
        "----------  -------\nvm-build-01     rg-ci            westeurope  1\n",
        "127.0.0.1 - - [24/Nov/2026:10:00:01 +0000] \"GET /api/health HTTP/1.1\" 200 17 \"-\" "
        "\"curl/8.5.0\"\n",
        "Nov 24 10:00:01 vm systemd[1]: Started Session 42 of User azureuser.\n",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk\n",
        "https://learn.microsoft.com/en-us/azure/storage/common/storage-sas-overview\n",
        "az keyvault secret list --vault-name kv-prod -o table\n",
        "  --password TEXT   Password for the registry (or set REGISTRY_PASSWORD)\n",
    ]
    for b in benign:
        add("benign", b)
    for _ in range(6):
        add("keyvault-list", f'[\n  {{\n    "attributes": {{ "enabled": true }},\n    "id": '
            f'"https://kv-{g.s(HEX, 6)}.vault.azure.net/secrets/db-pass",\n    "name": '
            f'"db-pass",\n    "tags": {{}}\n  }}\n]\n')
        cert = "\n".join(["-----BEGIN CERTIFICATE-----", *g.pem_body(4),
                          "-----END CERTIFICATE-----"])
        add("kubeconfig-cert", "    certificate-authority-data: "
            f"{base64.b64encode(cert.encode()).decode()}\n")
        add("uuid-env", f"AZURE_CLIENT_ID={g.guid()}\nAZURE_TENANT_ID={g.guid()}\n"
            f"AZURE_SUBSCRIPTION_ID={g.guid()}\n")
        add("hex-hash", f"{g.s(HEX, 64)}  release.tar.gz\n{g.s(HEX, 32)}  notes.txt\n")
        add("progress", f"\rDownloading  {g.r.randint(1, 99)}% |{'#' * g.r.randint(1, 30)}"
            f"{' ' * 5}| {g.r.randint(1, 900)}kB/s")
    return recs


def build_corpus(seed: int = 1234) -> list[Record]:
    g = Gen(seed)
    return positives(g) + negatives(g)


def visible(data: bytes) -> bytes:
    return ANSI.sub(b"", data)


def leaked(secret: bytes, output: bytes, run: int = 8) -> bool:
    """Whether a run of ``run`` characters of ``secret`` survives in ``output``."""
    vis = visible(output)
    if len(secret) < run:
        return secret in vis
    return any(secret[i:i + run] in vis for i in range(len(secret) - run + 1))


# --- realistic traffic for the benchmark --------------------------------------------------------

def _traffic_line(g: Gen) -> str:
    r = g.r
    k = r.randrange(12)
    word = g.s(string.ascii_lowercase, r.randint(4, 10))
    if k == 0:
        return (f"-rw-r--r--  1 azureuser azureuser {r.randint(10, 99999):>6} Nov 24 10:"
                f"{r.randint(10, 59)} {word}.py\n")
    if k == 1:
        return (f"Nov 24 10:{r.randint(10, 59)}:{r.randint(10, 59)} vm-build-01 systemd[1]: "
                f"Started {word}.service - {word.title()} daemon.\n")
    if k == 2:
        return (f"10.0.{r.randint(0, 9)}.{r.randint(1, 254)} - - [24/Nov/2026:10:00:01 +0000] "
                f"\"GET /api/v1/{word}?page={r.randint(1, 9)} HTTP/1.1\" 200 {r.randint(100, 9999)}"
                f" \"-\" \"python-requests/2.32\"\n")
    if k == 3:
        return (f"    \"id\": \"/subscriptions/{g.guid()}/resourceGroups/rg-{word}/providers/"
                f"Microsoft.Compute/virtualMachines/vm-{word}\",\n")
    if k == 4:
        return f"{g.s(HEX, 7)} fix({word}): handle empty {word} list in parser\n"
    if k == 5:
        return (f"gcc -O2 -Wall -c src/{word}.c -o build/{word}.o\nsrc/{word}.c:{r.randint(1, 400)}"
                f":5: warning: unused variable 'tmp' [-Wunused-variable]\n")
    if k == 6:
        return (f"Collecting {word}>=1.{r.randint(0, 9)}\n  Downloading {word}-1.{r.randint(0, 9)}"
                f".0-py3-none-any.whl ({r.randint(10, 900)} kB)\n")
    if k == 7:
        return (f"{word}-{g.s(HEX, 10)}-{g.s(string.ascii_lowercase, 5)}   1/1     Running   "
                f"{r.randint(0, 3)}          {r.randint(1, 30)}d\n")
    if k == 8:
        return (f"  File \"/usr/lib/python3/dist-packages/{word}/core.py\", line "
                f"{r.randint(1, 999)}, in {word}\n")
    if k == 9:
        return (f"[{r.randint(1, 99999)}.{r.randint(100000, 999999)}] {word}: link up, 10Gbps, "
                f"full duplex\n")
    if k == 10:
        return f"{'  ' * r.randint(1, 4)}\"{word}\": {r.randint(0, 100000)},\n"
    return (f"vm-{word:<12} rg-ci          westeurope  Standard_D4s_v5  "
            f"10.1.{r.randint(0, 9)}.{r.randint(1, 254)}  VM running\n")


def terminal_traffic(seed: int, size: int, secret_every: int = 0, color: bool = False) -> bytes:
    """``size`` bytes of realistic terminal output; with ``secret_every`` > 0, a positive
    corpus record is inserted every that many lines."""
    g = Gen(seed)
    pos = [r.text for r in positives(Gen(seed + 1))] if secret_every else []
    out: list[str] = []
    total, n = 0, 0
    while total < size:
        line = _traffic_line(g)
        if color and n % 3 == 0:
            line = f"\x1b[01;3{n % 7}m{line[:-1]}\x1b[0m\n"
        out.append(line)
        total += len(line)
        n += 1
        if secret_every and n % secret_every == 0:
            rec = pos[n // secret_every % len(pos)].decode()
            out.append(rec if rec.endswith("\n") else rec + "\n")
            total += len(out[-1])
    return "".join(out).encode()[:size]
