"""Labelled corpus by mechanism: structure, separated keys, tables, encodings, new formats,
CLI flags, cookies, command transcripts, session memory (issue 18).

``build_structure_corpus(seed)`` returns ``Record``s like masking_corpus.build_corpus: each
mechanism has positives (the fake secrets they carry, generated with the right shape) and
look-alikes that must pass unchanged (UUIDs, hashes, base64 of non-secrets, resource ids,
``"sensitive": false``, a ``KeyVaultName`` column ...). ``Record.rule`` names the mechanism
(positives) or the look-alike family (negatives); no rule id is asserted per record.
"""

from __future__ import annotations

import base64
import json
import string
from urllib.parse import quote

from masking_corpus import B62, B64, B64U, HEX, UP32, Gen, Record

LOWER = string.ascii_lowercase
B32L = "abcdefghijklmnopqrstuvwxyz234567"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class _Out:
    def __init__(self) -> None:
        self.recs: list[Record] = []

    def pos(self, mech: str, text: str, *secrets: str) -> None:
        self.recs.append(Record("pos", mech, text.encode(), [s.encode() for s in secrets]))

    def neg(self, family: str, text: str) -> None:
        self.recs.append(Record("neg", family, text.encode()))


def _pem(g: Gen, kind: str = "RSA PRIVATE KEY", lines: int = 6) -> tuple[str, list[str]]:
    body = [g.s(B64, 64) for _ in range(lines)] + [g.s(B64, 24) + "=="]
    return "\n".join([f"-----BEGIN {kind}-----", *body, f"-----END {kind}-----"]), body


def _cert(g: Gen) -> str:
    body = [g.s(B64, 64) for _ in range(5)] + [g.s(B64, 20) + "=="]
    return "\n".join(["-----BEGIN CERTIFICATE-----", *body, "-----END CERTIFICATE-----"])


def separated_pairs(g: Gen, o: _Out) -> None:
    for _ in range(8):
        pw, name = g.password() + g.s(B62, 4), g.pick("DB_PASSWORD", "SQL_ADMIN_PWD", "speech-key",
                                                       "REDIS_SECRET", "ApiToken", "SMTP_PASS")
        benign = g.pick("WEBSITE_NODE_DEFAULT_VERSION", "KEY_VAULT_NAME", "APP_BASE_URL",
                        "ASPNETCORE_ENVIRONMENT", "SECRET_NAME", "TOKEN_EXPIRY")
        bval = g.pick("~18", "kv-prod-" + g.s(LOWER, 4), "https://app.contoso.com", "Production",
                      "db-pass", "3600")
        o.pos("json-name-value", f'[\n  {{\n    "name": "{name}",\n    "slotSetting": false,\n'
              f'    "value": "{pw}"\n  }}\n]\n', pw)
        o.neg("json-name-value", f'[\n  {{\n    "name": "{benign}",\n    "slotSetting": false,\n'
              f'    "value": "{bval}"\n  }}\n]\n')
        o.pos("appsettings-one-line", f'{{"name": "{name}", "value": "{pw}", '
              f'"slotSetting": false}}\n', pw)
        o.neg("appsettings-one-line", f'{{"name": "{benign}", "value": "{bval}", '
              '"slotSetting": false}\n')
        o.pos("k8s-env", f"        env:\n        - name: {name}\n          value: {pw}\n"
              "        - name: LOG_LEVEL\n          value: debug\n", pw)
        o.neg("k8s-env", f"        env:\n        - name: {benign}\n          value: \"{bval}\"\n"
              "        - name: DB_PASSWORD\n          valueFrom:\n            secretKeyRef:\n"
              "              name: db\n              key: password\n")
        tf = g.password() + g.s(B62, 8)
        o.pos("terraform-sensitive", f'{{\n  "db_admin_password": {{\n    "sensitive": true,\n'
              f'    "type": "string",\n    "value": "{tf}"\n  }}\n}}\n', tf)
        o.neg("terraform-sensitive", f'{{\n  "resource_group_id": {{\n    "sensitive": false,\n'
              f'    "type": "string",\n    "value": "/subscriptions/{g.guid()}/resourceGroups/'
              f'rg-{g.s(LOWER, 5)}"\n  }}\n}}\n')
        o.pos("terraform-sensitive-compact", f'{{"sql_password":{{"sensitive":true,"type":"string",'
              f'"value":"{tf}"}}}}\n', tf)
        o.neg("terraform-sensitive-compact", f'{{"location":{{"sensitive":false,"type":"string",'
              f'"value":"westeurope"}}, "vm_id":{{"sensitive":false,"type":"string","value":'
              f'"{g.guid()}"}}}}\n')
        k = g.key88()
        o.pos("keys-list-json", f'[\n  {{\n    "creationTime": "2026-11-02T10:00:00+00:00",\n'
              f'    "keyName": "key1",\n    "permissions": "FULL",\n    "value": "{k[:-2]}"\n'
              '  }\n]\n', k[:-2])
        o.pos("xml-add-key", f'  <add key="{name}" value="{pw}" />\n', pw)
        o.neg("xml-add-key", f'  <add key="{benign}" value="{bval}" />\n')
        o.pos("xml-element", f"<configuration>\n  <password>{pw}</password>\n"
              "</configuration>\n", pw)
        o.neg("xml-element", f"<settings>\n  <passwordPolicy>strict</passwordPolicy>\n"
              f"  <keyVaultName>kv-{g.s(LOWER, 6)}</keyVaultName>\n</settings>\n")


def yaml_structure(g: Gen, o: _Out) -> None:
    for _ in range(6):
        pem, body = _pem(g)
        ind = "\n".join("    " + ln for ln in pem.splitlines())
        o.pos("yaml-block-pem", f"apiVersion: v1\nkind: Secret\nstringData:\n  tls.key: |\n{ind}\n"
              "type: kubernetes.io/tls\n", *body[:-1])
        cert = "\n".join("    " + ln for ln in _cert(g).splitlines())
        o.neg("yaml-block-cert", f"data:\n  tls.crt: |\n{cert}\n  ca.crt: |\n{cert}\n")
        pw = g.password()
        o.pos("yaml-block-secret", f"config:\n  db_password: |\n    {pw}\n  log_level: info\n", pw)
        o.neg("yaml-block-script", "steps:\n  - script: |\n      echo building\n"
              f"      ./build.sh --target {g.s(LOWER, 6)}\n    displayName: Build\n")
        v1, v2 = g.password(), g.s(B62, 32)
        e1, e2 = _b64(v1), _b64(v2)
        o.pos("kubectl-secret-yaml", f"apiVersion: v1\ndata:\n  password: {e1}\n  api-key: {e2}\n"
              "kind: Secret\nmetadata:\n  name: app\ntype: Opaque\n", e1, e2)
        o.pos("kubectl-secret-stringdata", f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n"
              f"stringData:\n  password: {v1}\n  token: {v2}\n", v1, v2)
        o.neg("json-data-object", f'{{\n  "data": {{\n    "items": [],\n    "cursor": '
              f'"{g.s(B64, 16)}",\n    "etag": "{g.s(B64, 12)}"\n  }}\n}}\n')
        o.neg("configmap-data", "apiVersion: v1\ndata:\n  LOG_LEVEL: debug\n  PORT: \"8080\"\n"
              "kind: ConfigMap\n")
        last = json.dumps({"apiVersion": "v1", "data": {"password": e1, "token": e2},
                           "kind": "Secret", "metadata": {"name": "app", "namespace": "default"},
                           "type": "Opaque"}, separators=(",", ":"))
        o.pos("last-applied-yaml", "metadata:\n  annotations:\n    kubectl.kubernetes.io/last-"
              f"applied-configuration: |\n      {last}\n  name: app\n", e1, e2)
        o.pos("last-applied-json", '{\n    "metadata": {\n        "annotations": {\n'
              '            "kubectl.kubernetes.io/last-applied-configuration": '
              f'{json.dumps(last + chr(10))}\n        }},\n        "name": "app"\n    }}\n}}\n',
              e1, e2)
        cm = json.dumps({"apiVersion": "v1", "data": {"LOG_LEVEL": "debug", "MODE": "blue"},
                         "kind": "ConfigMap", "metadata": {"name": "cfg"}},
                        separators=(",", ":"))
        o.neg("last-applied-configmap", "    kubectl.kubernetes.io/last-applied-configuration: |\n"
              f"      {cm}\n")


def tables(g: Gen, o: _Out) -> None:
    for _ in range(6):
        k1, k2 = g.key88(), g.key88()
        o.pos("az-table-keys", "KeyName    Permissions    Value\n---------  -------------  "
              f"{'-' * 88}\nkey1       FULL           {k1}\nkey2       FULL           {k2}\n",
              k1, k2)
        pw = g.password()
        o.pos("az-table-appsettings", "Name                          SlotSetting    Value\n"
              "----------------------------  -------------  --------------------\n"
              "WEBSITE_NODE_DEFAULT_VERSION  False          ~18\n"
              f"DB_PASSWORD                   False          {pw}\n", pw)
        hk = g.s(HEX, 32)
        o.pos("tsv-header", f"Name\tKey\tEndpoint\nspeech\t{hk}\thttps://westeurope.api.cognitive"
              ".microsoft.com/\n", hk)
        kid, sk = "AKIA" + g.s(UP32, 16), g.s(B64, 40)
        o.pos("aws-credentials-csv", "User name,Password,Access key ID,Secret access key,Console "
              f"login link\nci-bot,,{kid},{sk},https://123456789012.signin.aws.amazon.com/console\n",
              kid, sk)
        o.pos("aws-credentials-csv-short", f"Access key ID,Secret access key\n{kid},{sk}\n",
              kid, sk)
        o.pos("table-password-column", "HOST           USER     PASSWORD\n"
              f"db01.internal  admin    {pw}\n", pw)
        k44, k44b = g.key44(), g.key44()
        o.pos("tsv-44-char-keys", f"{k44}\t{k44b}\n", k44, k44b)
        o.pos("tsv-sb-rule-keys", f"RootManageSharedAccessKey\tEndpoint=sb://ns{g.s(LOWER, 5)}."
              f"servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
              f"SharedAccessKey={k44}\t{k44}\n", k44)
        o.neg("tsv-digests", f"app.zip\t{g.s(B64, 22)}==\tsha256-{g.s(B64, 43)}=\t2026-11-24\n"
              f"github.com/x/y v1.0.0 h1:{g.s(B64, 43)}=\n")
        o.neg("table-keyvaultname", "KeyVaultName    Location    ResourceGroup\n"
              "--------------  ----------  ---------------\n"
              f"kv-{g.s(LOWER, 8)}     westeurope  rg-{g.s(LOWER, 6)}\n")
        o.neg("kubectl-get-secrets", "NAME                  TYPE                                  "
              "DATA   AGE\ndefault-token-x2x9q   kubernetes.io/service-account-token   3      "
              "12d\ndb-creds              Opaque                                2      3d\n")
        o.neg("table-tags", "Name         Value\n-----------  -------\nenvironment  prod\n"
              "owner        platform\n")
        o.neg("table-secret-list", "Name      ContentType    Enabled    Expires\n"
              "--------  -------------  ---------  ---------\n"
              "db-pass                  True\napi-key   text/plain     True\n")


def ini_env(g: Gen, o: _Out) -> None:
    for _ in range(6):
        pw, k = g.password(), g.key88()
        o.pos("rclone-sftp", f"[backup]\ntype = sftp\nhost = 10.0.0.{g.r.randint(2, 250)}\n"
              f"user = backup\npass = {pw}\n", pw)
        o.pos("rclone-azureblob", f"[blob]\ntype = azureblob\naccount = st{g.s(LOWER, 8)}\n"
              f"key = {k}\n", k)
        o.neg("ini-key-plain", "[core]\nkey = value\n[section]\nkey = app\npass = 3\n")
        o.neg("yaml-match-expressions", "      matchExpressions:\n      - key: environment\n"
              "        operator: In\n        values: [prod]\n")
        wg, psk = g.key44(), g.key44()
        o.pos("wireguard", f"[Interface]\nAddress = 10.8.0.2/24\nPrivateKey = {wg}\n\n[Peer]\n"
              f"PublicKey = {g.key44()}\nPresharedKey = {psk}\nEndpoint = vpn.contoso.com:51820\n",
              wg, psk)
        o.neg("wireguard-public", f"peer: {g.key44()}\n  endpoint: 20.1.2.3:51820\n"
              "  allowed ips: 10.8.0.0/24\n")
        tok = g.s(B62, 40)
        o.pos("env-file", f"$ cat .env\nAPP_ENV=production\nSTRIPE_KEY={tok}\nDB_PASSWORD={pw}\n",
              tok, pw)


def encodings(g: Gen, o: _Out) -> None:
    for _ in range(6):
        pw, tok = g.password(), "ghp_" + g.s(B62, 36)
        inner = json.dumps({"password": pw, "user": "app"})
        o.pos("escaped-json", json.dumps({"settings": inner}) + "\n", pw)
        o.pos("double-escaped-json", json.dumps({"outer": json.dumps({"settings": inner})}) + "\n",
              pw)
        o.neg("escaped-json", json.dumps({"settings": json.dumps({"passwordPolicy": "strict",
                                                                 "user": "app"})}) + "\n")
        o.pos("token-after-newline-escape", json.dumps({"log": f"clone failed\n{tok} rejected"})
              + "\n", tok)
        sig = quote(g.s(B64, 43) + "=", safe="")
        acct = g.s(LOWER, 10)
        o.pos("sas-unicode-escape", f'{{"url": "https://{acct}.blob.core.windows.net/c/b?sv=2022-11'
              f'-02\\u0026se=2026-12-01\\u0026sp=r\\u0026sig={sig}"}}\n', sig)
        o.neg("unicode-escape-url", f'{{"url": "https://management.azure.com/subscriptions/'
              f'{g.guid()}?api-version=2022-09-01\\u0026$top=10"}}\n')
        qpw = quote(pw, safe="")
        o.pos("url-encoded", f"GET /login?user=app&password%3D{qpw}%26next HTTP/1.1\n", qpw)
        o.pos("url-encoded-json", "payload=" + quote(json.dumps({"client_secret": pw + "xyz"}),
                                                      safe="") + "\n", quote(pw, safe=""))
        o.neg("url-encoded", "redirect_uri=https%3A%2F%2Fapp.contoso.com%2Fcallback%3Fstate%3D"
              f"{g.s(HEX, 16)}\n")
        pem, _body = _pem(g)
        kc = (f"apiVersion: v1\nclusters:\n- cluster:\n    server: https://aks-{g.s(LOWER, 6)}."
              f"hcp.westeurope.azmk8s.io:443\n  name: aks\nusers:\n- name: clusterUser\n  user:\n"
              f"    token: {g.s(HEX, 64)}\n")
        b = _b64(kc)
        o.pos("base64-kubeconfig", f'{{\n  "kubeconfigs": [\n    {{\n      "name": "clusterUser",\n'
              f'      "value": "{b}"\n    }}\n  ]\n}}\n', b)
        o.pos("base64-pem", f"key.pem: {_b64(pem)}\n", _b64(pem))
        cfg = _b64("apiVersion: v1\nkind: Config")
        o.neg("base64-configmap", f"config.yaml: {cfg}\n")
        o.neg("base64-text", f"{_b64('hello from the build agent, nothing secret here ' * 2)}\n")


def formats(g: Gen, o: _Out) -> None:
    for _ in range(4):
        toks = {
            "anthropic-oauth": "sk-ant-oat01-" + g.s(B64U, 95) + "AA",
            "anthropic-refresh": "sk-ant-ort01-" + g.s(B64U, 95) + "AA",
            "groq": "gsk_" + g.s(B62, 52),
            "openrouter": "sk-or-v1-" + g.s(HEX, 64),
            "langsmith": g.pick("lsv2_pt_", "lsv2_sk_") + g.s(HEX, 32) + "_" + g.s(HEX, 10),
            "replicate": "r8_" + g.s(B62, 37),
            "tailscale": "tskey-auth-k" + g.s(B62, 10) + "CNTRL-" + g.s(B62, 33),
            "postman": "PMAK-" + g.s(HEX, 24) + "-" + g.s(HEX, 34),
            "atlassian": "ATATT3xFfGF0" + g.s(B64U, 170) + "=" + g.s(HEX.upper(), 8),
            "supabase-pat": "sbp_" + g.s(HEX, 40),
            "supabase-secret": "sb_secret_" + g.s(B64U, 31),
            "jwe": ".".join(["eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ", g.s(B64U, 342),
                             g.s(B64U, 16), g.s(B64U, 120), g.s(B64U, 22)]),
            "ecr-password": _b64(json.dumps({"payload": g.s(B64, 600), "datakey": g.s(B64, 300),
                                             "version": "2", "type": "DATA_KEY",
                                             "expiration": 1767225600}, separators=(",", ":"))),
            "msal-refresh": "1.A" + g.s(B64U, 3) + g.s(B64U + ".", 900),
        }
        for mech, tok in toks.items():
            o.pos(f"format-{mech}", f"2026-11-24T10:00:00Z agent: using {tok} for the call\n", tok)
        o.pos("format-msal-cache", f'{{\n  "RefreshToken": {{\n    "x-rt": {{\n      "credential_'
              f'type": "RefreshToken",\n      "secret": "{toks["msal-refresh"]}",\n'
              '      "home_account_id": "x"\n    }\n  }\n}\n', toks["msal-refresh"])
        o.neg("format-lookalike", "sb_publishable_" + g.s(B64U, 31) + " is the public key\n")
        o.neg("format-lookalike", f"gsk_{g.s(B62, 8)} r8_{g.s(B62, 6)} sk-or-v1-short tskey-auth\n")
        o.neg("format-lookalike", "eyJhbGciOiJub25lIn0." + g.s(B64U, 4) + "\n")
        o.neg("format-lookalike", "See https://tailscale.com/kb/1085/auth-keys (tskey-auth-...)\n")
        wg = g.key44()
        o.neg("wireguard-public", f"PublicKey = {wg}\n")
        o.neg("atlassian-lookalike", "ATATT3 is the prefix of Atlassian API tokens\n")


def cli_flags(g: Gen, o: _Out) -> None:
    for _ in range(3):
        pw = g.password()
        tok = g.s(B62, 40)
        reg = g.s(LOWER, 8)
        runner, ts = g.s(UP32, 29), f"tskey-auth-k{g.s(B62, 10)}CNTRL-{g.s(B62, 33)}"
        cases = [
            (f"$ docker login {reg}.azurecr.io -u {reg} -p {pw}\n", pw),
            (f"$ curl -sS -u admin:{pw} https://{reg}.scm.azurewebsites.net/api/zipdeploy\n", pw),
            (f"$ redis-cli -h {reg}.redis.cache.windows.net -p 6380 --tls -a {pw} ping\n", pw),
            (f"$ openssl pkcs12 -export -in c.pem -inkey k.pem -out c.pfx -passout pass:{pw}\n",
             pw),
            (f"$ openssl rsa -in enc.key -passin pass:{pw} -out plain.key\n", pw),
            (f"$ kubectl --token {tok} get pods\n", tok),
            (f"$ kubectl get pods --token={tok}\n", tok),
            (f"$ az login --service-principal -u {g.guid()} -p {pw} --tenant {g.guid()}\n", pw),
            (f"$ az sql server create -n {reg} -g rg -u sqladmin --admin-password {pw}\n", pw),
            (f"$ ldapsearch -x -H ldap://dc01 -D cn=admin,dc=contoso -w {pw} -b dc=contoso\n", pw),
            (f"$ 7z x backup.7z -p{pw}\n", pw),
            (f"$ ./config.sh --url https://github.com/org/repo --token {runner}\n", runner),
            (f"$ tailscale up --authkey {ts}\n", ts),
            (f"$ sudo tailscale up --auth-key={g.s(B62, 24)}x9\n", None),
            (f"$ sshpass -p {pw} ssh admin@10.0.0.4\n", pw),
            (f"$ mysql -h db -u root -p{pw} app\n", pw),
        ]
        for c, secret in cases:
            if secret is None:
                secret = c.split("=")[-1].strip()
            o.pos("cli-flag", c, secret)
        negs = [
            f"$ docker login {reg}.azurecr.io -u {reg} --password-stdin\n",
            f"$ curl -u admin https://{reg}.example.org/\n",
            f"$ redis-cli -h {reg}.redis.cache.windows.net -p 6380 --tls ping\n",
            "$ openssl rsa -in enc.key -passin env:KEY_PASS -out plain.key\n",
            "$ openssl pkcs12 -in c.pfx -passin file:/run/secrets/pfx-pass -nokeys\n",
            "$ kubectl --token-file /var/run/secrets/token get pods\n",
            "$ ldapsearch -x -W -D cn=admin,dc=contoso -b dc=contoso\n",
            "  -p, --password string   Password (prompted when omitted)\n",
            "$ 7z x backup.7z -o/tmp/restore\n",
            "$ docker run -p 8080:80 nginx\n",
            "$ az vm list -g rg-ci -o table --query '[].name'\n",
        ]
        for c in negs:
            o.neg("cli-flag", c)


def cookies(g: Gen, o: _Out) -> None:
    for _ in range(3):
        vals = {n: g.s(B64U, 48) for n in (".AspNetCore.Cookies", ".ASPXAUTH",
                                           "AppServiceAuthSession", "ESTSAUTHPERSISTENT",
                                           "connect.sid", "sessionid", "JSESSIONID", "session")}
        for name, v in vals.items():
            o.pos("cookie", f"< Set-Cookie: {name}={v}; path=/; secure; HttpOnly\r\n", v)
        v = vals["sessionid"]
        o.pos("cookie-header", f"> Cookie: csrftoken={g.s(B62, 32)}; sessionid={v}\r\n", v)
        o.pos("cookie-jar", f"#HttpOnly_app.contoso.com\tFALSE\t/\tTRUE\t0\tJSESSIONID\t{v}\n", v)
        o.neg("cookie", f"< Set-Cookie: csrftoken={g.s(B62, 32)}; Path=/; SameSite=Lax\r\n")
        o.neg("cookie", "< Set-Cookie: theme=dark; Path=/\r\n< Set-Cookie: session=; Max-Age=0\r\n")
        o.neg("cookie", "app.use(session({ name: 'connect.sid', resave: false }))\n")


def urls(g: Gen, o: _Out) -> None:
    for _ in range(4):
        pw = g.s(B62, 4) + g.pick("@", "/") + g.s(B62, 6) + g.pick("@", "/") + g.s(B62, 3)
        o.pos("url-password-at-slash", f"DATABASE_URL=postgres://app:{pw}@db.internal:5432/app\n",
              pw)
        pat = g.s(B32L, 52)
        o.pos("url-pat-user", f"origin\thttps://{pat}@dev.azure.com/org/proj/_git/repo (fetch)\n",
              pat)
        gh = "ghp_" + g.s(B62, 36)
        o.pos("url-pat-user", f"remote: https://{gh}@github.com/org/repo.git\n", gh)
        o.neg("url-lookalike", "https://registry.npmjs.org:443/@types/node/-/node-20.1.0.tgz\n")
        o.neg("url-lookalike", "git@github.com:org/repo.git\nhttps://deploy@dev.azure.com/org\n")
        o.neg("url-lookalike", f"https://{g.s(LOWER, 8)}.blob.core.windows.net/c/{g.guid()}@v2\n")


def transcripts(g: Gen, o: _Out) -> None:
    for _ in range(4):
        host = g.pick("azureuser@vm-build-01:~$ ", "$ ", "ci@jump:/srv$ ")
        v = g.s(B62, 20) + g.pick("!", "-", "_") + g.s(B62, 8)
        o.pos("transcript-kv-tsv", f"{host}az keyvault secret show --vault-name kv-prod --name "
              f"db-pass --query value -o tsv\n{v}\n{host}", v)
        o.pos("transcript-terraform-raw",
              f"{host}terraform output -raw admin_password\n{v}\n{host}", v)
        gh = "gho_" + g.s(B62, 36)
        o.pos("transcript-gh-token", f"{host}gh auth token\n{gh}\n{host}", gh)
        tok = g.jwt()
        o.pos("transcript-access-token", f"{host}az account get-access-token --query accessToken "
              f"-o tsv\n{tok}\n{host}", tok)
        o.pos("transcript-printenv", f"{host}printenv\nHOME=/home/azureuser\nAPP_SIGNING={v}\n"
              f"{host}", v)
        o.pos("xtrace-terraform-raw", f"+ terraform output -raw admin_password\n{v}\n+ echo ok\n"
              "ok\n", v)
        o.pos("log-gh-token", f"gh auth token\n{gh}\n", gh)
        o.neg("readme-command", "Get a token for the API:\n\n```bash\naz account get-access-token"
              " --query accessToken -o tsv\n```\n\nthen pass it as a bearer token.\n")
        o.pos("transcript-echo-secret", f"{host}echo $SQL_ADMIN_PASSWORD\n{v}\n{host}", v)
        o.neg("transcript-echo-benign", f"{host}echo $HOME\n/home/azureuser\n{host}echo "
              f"$AZURE_SUBSCRIPTION_ID\n{g.guid()}\n{host}")
        o.neg("transcript-benign", f"{host}az group list --query [].name -o tsv\nrg-{g.s(LOWER, 5)}"
              f"\nrg-{g.s(LOWER, 5)}\n{host}")
        o.neg("transcript-benign", f"{host}terraform output -json | jq keys\n[\n  \"location\",\n"
              f"  \"vm_id\"\n]\n{host}")
        o.neg("transcript-benign", f"{host}az keyvault secret list --vault-name kv-prod -o tsv "
              f"--query [].name\ndb-pass\napi-key\n{host}")


def memory(g: Gen, o: _Out) -> None:
    for _ in range(4):
        v = g.s(B62, 14) + g.pick("!", "#", "-") + g.s(B62, 6)
        o.pos("session-memory", f'{{\n  "id": "https://kv-{g.s(HEX, 6)}.vault.azure.net/secrets/'
              f'db/{g.s(HEX, 32)}",\n  "value": "{v}"\n}}\n$ psql "host=db user=app" -c '
              f"'select 1' # tried {v}\n", v)
        o.pos("session-memory", f"DB_PASSWORD={v}\nconnecting with {v} ... ok\n", v)
        o.neg("session-memory", f"DB_HOST=db.internal\nconnecting to db.internal ... ok\n"
              f"build {g.s(HEX, 12)} finished\n")


def truncation(g: Gen, o: _Out) -> None:
    for _ in range(4):
        for pre in ("sk-ant-api03-", "ghp_", "xoxb-", "AKIA", "glpat-"):
            t = pre + g.s(B62, g.r.randint(6, 14))
            o.pos("truncated", f"  token: {t}…\n", t)
            o.pos("truncated", f"| {t}... | active |\n", t)
        o.neg("truncated", "Loading... done\nsee docs for sk-... keys\n")


def false_alarms(g: Gen, o: _Out) -> None:
    for _ in range(3):
        o.neg("pem-marker-in-code", 'src/keys.py:12:    if line.startswith("-----BEGIN RSA PRIVATE '
              'KEY-----"):\nsrc/keys.py:13:        return parse(line)\nsrc/keys.py:14:    '
              "return None\n")
        o.neg("pem-marker-in-code", "const HEADER = '-----BEGIN PRIVATE KEY-----';\n"
              "const body = key.slice(HEADER.length);\n")
        o.neg("www-authenticate", 'WWW-Authenticate: Bearer authorization_uri="https://login.'
              f'microsoftonline.com/{g.guid()}", error="invalid_token", error_description="The '
              'access token is missing"\n')
        o.neg("code-names-secret", 'secret = os.environ["DB_SECRET"]\ntoken = get_token(scope)\n'
              'var s = await client.GetSecretAsync("db-pass");\n')
        o.neg("nuget-lock", f'      "contentHash": "{g.key88()}",\n      "sha512": '
              f'"{g.key88()}"\n')
        o.neg("git-config", "credential.helper=store\ncredential.usehttppath=true\n")
        o.neg("nsswitch", "passwd:         files systemd\ngroup:          files systemd\n"
              "shadow:         files\n")
        o.neg("nsswitch", "passwd: files\ngroup: files\nhosts: files dns\n")
        o.neg("help-text", "  --value VALUE      The secret value.\n  --password PASSWORD  Admin "
              "password.\n")
        o.neg("value-from-file", "$ az keyvault secret set --vault-name kv --name x --value "
              "@secret.txt\n")
        o.neg("entra-password-metadata", '"passwordCredentials": [\n  {\n    "displayName": "ci",'
              f'\n    "endDateTime": "2027-01-01T00:00:00Z",\n    "hint": "{g.s(B62, 3)}",\n    '
              f'"keyId": "{g.guid()}",\n    "secretText": null\n  }}\n]\n')
        o.neg("keyvault-reference", "DB_PASSWORD=@Microsoft.KeyVault(SecretUri=https://kv-prod."
              "vault.azure.net/secrets/db-pass/)\n")
        o.neg("keyvault-reference", '{"name": "DB_PASSWORD", "value": "@Microsoft.KeyVault('
              'VaultName=kv-prod;SecretName=db-pass)", "slotSetting": false}\n')
        o.neg("uuid-hash", f"{g.guid()} {g.s(HEX, 64)} {g.sha()}\n")
        o.neg("resource-id", f'"id": "/subscriptions/{g.guid()}/resourceGroups/rg/providers/'
              f'Microsoft.KeyVault/vaults/kv-{g.s(LOWER, 6)}/secrets/db-password"\n')


def az_outputs(g: Gen, o: _Out) -> None:
    """az / helm / ARM outputs as printed, and the metadata look-alikes next to them."""
    for _ in range(4):
        fk, mk = g.s(B64U, 54) + "==", g.s(B64U, 54) + "=="
        o.pos("az-functionapp-keys", f'{{\n  "functionKeys": {{\n    "default": "{fk}"\n  }},\n'
              f'  "masterKey": "{mk}",\n  "systemKeys": {{}}\n}}\n', fk, mk)
        pw = g.password() + g.s(B62, 4)
        o.pos("arm-parameters", f'{{\n  "adminPassword": {{\n    "value": "{pw}"\n  }},\n'
              '  "adminUsername": {\n    "value": "azureuser"\n  }\n}\n', pw)
        o.pos("arm-securestring", f'{{\n  "dbConn": {{\n    "type": "SecureString",\n'
              f'    "value": "{pw}"\n  }}\n}}\n', pw)
        o.neg("arm-string", '{\n  "adminUsername": {\n    "type": "String",\n    "value": '
              f'"azureuser{g.r.randint(1, 99)}"\n  }}\n}}\n')
        up = g.s(B62, 60)
        o.pos("publishing-profile-json", f'[\n  {{\n    "publishMethod": "MSDeploy",\n'
              f'    "userName": "$app",\n    "userPWD": "{up}"\n  }}\n]\n', up)
        kv = g.password() + g.s(B62, 6)
        o.pos("keyvault-show-tsv", f"None\tNone\thttps://kv-{g.s(LOWER, 5)}.vault.azure.net/"
              f"secrets/db-pass/{g.s(HEX, 32)}\tNone\tNone\tdb-pass\t{kv}\n", kv)
        o.neg("keyvault-list-tsv", f"None\thttps://kv-{g.s(LOWER, 5)}.vault.azure.net/secrets/"
              "db-pass\tNone\tdb-pass\n")
        p1, p2 = g.s(B62, 32), g.s(B62, 32)
        o.pos("acr-credential-json", f'{{\n  "passwords": [\n    {{\n      "name": "password",\n'
              f'      "value": "{p1}"\n    }},\n    {{\n      "name": "password2",\n'
              f'      "value": "{p2}"\n    }}\n  ],\n  "username": "reg"\n}}\n', p1, p2)
        o.pos("helm-values", f"USER-SUPPLIED VALUES:\nauth:\n  rootPassword: {pw}\n"
              f"  password: {p1}\n", pw, p1)
        o.neg("appinsights-connection-string", f'{{\n  "connectionString": "InstrumentationKey='
              f'{g.guid()};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/'
              '"\n}\n')
        o.neg("serviceaccount-secrets", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: "
              f"default\nsecrets:\n- name: default-token-{g.s(LOWER, 5)}\n")
        o.neg("pod-env-valuefrom", "        env:\n        - name: ASPNETCORE_URLS\n"
              "          value: http://+:80\n        - name: DB_PASSWORD\n"
              "          valueFrom:\n            secretKeyRef:\n              key: password\n"
              "              name: db\n")
        o.neg("metric-name-value", '{\n  "name": {\n    "localizedValue": "Percentage CPU",\n'
              '    "value": "Percentage CPU"\n  }\n}\n')
        o.neg("keyvault-access-policy", '        "permissions": {\n          "keys": [\n'
              '            "get"\n          ],\n          "secrets": [\n            "get",\n'
              '            "list"\n          ]\n        }\n')
        o.neg("terraform-plan", '      + administrator_login          = "sqladmin"\n      + '
              'administrator_login_password = (sensitive value)\n      + id        = (known after'
              ' apply)\n')
        o.neg("configmap-block", "apiVersion: v1\ndata:\n  appsettings.json: |\n    {\"Logging\": "
              "{\"LogLevel\": {\"Default\": \"Information\"}}}\n  LOG_LEVEL: Debug\n"
              "kind: ConfigMap\n")
        o.neg("appconfig-table", "Key                 Value                          Label\n"
              "------------------  -----------------------------  -------\nApp:Color           "
              "blue                           prod\nApp:Endpoint        https://api.contoso.com/v1"
              "     prod\n")
        o.neg("transcript-cd", "azureuser@vm:~$ cd src\nazureuser@vm:~/src$ ls\n"
              "Makefile  main.go\nazureuser@vm:~/src$ cat README.md\n"
              f"Run make {g.s(LOWER, 6)} to build.\n")
        o.pos("ci-setvariable", f"##vso[task.setvariable variable=dbPassword;issecret=true]{pw}\n",
              pw)
        o.pos("ci-add-mask", f"::add-mask::{p2}\n", p2)
        o.neg("ci-setvariable", "##vso[task.setvariable variable=buildId]"
              f"{g.r.randint(1000, 9999)}\n::add-mask::$TOKEN\n")
        o.neg("github-actions-secrets", "        with:\n          username: ${{ secrets.ACR_USER }}"
              "\n          password: ${{ secrets.ACR_PASSWORD }}\n")
        o.neg("code-header-name", 'export const API_KEY_HEADER = "x-api-key";\nconst token = '
              "req.headers[API_KEY_HEADER];\n")


def build_structure_corpus(seed: int = 4321) -> list[Record]:
    g = Gen(seed)
    o = _Out()
    for part in (separated_pairs, yaml_structure, tables, ini_env, encodings, formats,
                 cli_flags, cookies, urls, transcripts, memory, truncation, false_alarms,
                 az_outputs):
        part(g, o)
    return o.recs
