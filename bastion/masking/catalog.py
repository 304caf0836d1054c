"""The default rule set (see docs/masking.md; a test keeps the two in step).

Patterns never cross a line: horizontal space is ``[ \\t]``, negated classes exclude ``\\r\\n``.
Prefix rules come first: when spans of several rules overlap, the earliest rule names the mask.
"""

from __future__ import annotations

import base64
import re

from bastion.masking.names import is_secret_name
from bastion.masking.rules import (
    Rule,
    char_classes,
    entropy,
    is_placeholder,
    not_placeholder,
    random_looking,
)

B64 = rb"[A-Za-z0-9+/]"
LB64 = rb"(?<![A-Za-z0-9+/])"
RB64 = rb"(?![A-Za-z0-9+/=])"
LW = rb"(?<![A-Za-z0-9_])"  # left word boundary (``_`` counts as word)
RW = rb"(?![A-Za-z0-9_])"
# key, optional closing quote, an assignment (or a space for CLI flags), optional opening quote
ASSIGN = rb"""["']?(?:[ \t]*(?::=|=>|=|:)[ \t]*|[ \t]+)["']?"""
ASSIGN_STRICT = rb"""["']?[ \t]*(?::=|=>|=|:)[ \t]*["']?"""


def _ident(rid: str, sig: bytes, desc: str, before: int, after: bytes, body: bytes = B64,
           left: bytes = LB64, right: bytes = RB64) -> Rule:
    """Azure identifiable key: a 4-char signature at a fixed offset of a fixed-length key."""
    pat = left + body + b"{%d}" % before + re.escape(sig) + after + right
    return Rule(rid, desc, pat, (sig,), lookback=before, anchor=sig, anchor_offset=before,
                strong=True)


def _prefix(rid: str, desc: str, pattern: bytes, *keywords: bytes, lookback: int = 0,
            flags: int = 0) -> Rule:
    return Rule(rid, desc, pattern, keywords, lookback=lookback, flags=flags,
                check=not_placeholder, strong=True)


def _b64_pem_private(value: bytes, key: bytes) -> bool:
    head = value[: (min(len(value), 120) // 4) * 4]
    try:
        decoded = base64.b64decode(head)
    except ValueError:
        return False
    return b"PRIVATE KEY" in decoded or b"PuTTY" in decoded


_DOC_SECRETS = re.compile(rb"client-key-data|token:|password|\"auth\"|PRIVATE KEY|"
                          rb"client-secret|access-token|id-token")


def _b64_document(value: bytes, key: bytes) -> bool:
    head = value[: (min(len(value), 1 << 16) // 4) * 4]
    try:
        decoded = base64.b64decode(head)
    except ValueError:
        return True  # cannot check: fail closed
    return len(value) > 1 << 16 or _DOC_SECRETS.search(decoded) is not None


_TRUNC_PREFIX = re.compile(rb"(?:sk-ant-|sk-proj-|sk-or-v1-|gh[pousr]_|github_pat_|glpat-"
                           rb"|xox[abposre]-|AKIA|ASIA|hvs\.|npm_|pypi-|dckr_pat_|[sr]k_live_"
                           rb"|AIza|ya29\.|gsk_|r8_|tskey-[a-z]+-|PMAK-|ATATT3|sbp_|sb_secret_"
                           rb"|lsv2_|hf_|dop_v1_|SG\.|glsa_|sntry[us]_)")


def _truncated_body(value: bytes, key: bytes) -> bool:
    # "sk-ant-api03-ab12…" is a cut-off key; "tskey-auth..." in docs names the format
    m = _TRUNC_PREFIX.match(value)
    rest = value[m.end():] if m else value
    alnum = bytes(c for c in rest if chr(c).isalnum())
    return not is_placeholder(value) and len(alnum) >= 4 and (
        char_classes(alnum) >= 2 or (alnum.isdigit() and len(alnum) >= 6))


def _xml_secret(value: bytes, key: bytes) -> bool:
    return is_secret_name(key) and not is_placeholder(value) and len(value) >= 4 \
        and not value.isdigit() and value.lower() not in (b"true", b"false")


def _ini_secret(value: bytes, key: bytes) -> bool:
    if is_placeholder(value) or _CODE_REF.fullmatch(value):
        return False
    if key.lower() == b"key":  # "key = value" is everywhere; only a random-looking value
        return random_looking(16, 3.5)(value, key)
    return len(value) >= 4


def _not_path(value: bytes, key: bytes) -> bool:
    # PWD=/home/user in an env dump is the working directory, not a password
    return not value.startswith((b"/", b"~")) and not is_placeholder(value)


def _not_metavar(value: bytes, key: bytes) -> bool:
    # "--password TEXT" in help output: an upper-case metavariable, not a value; "--value
    # @file.txt" reads the value from a file
    v = value.strip(b"\"'")
    return re.fullmatch(rb"[A-Z_]{2,16}|<[^>]*>|\[[^\]]*\]", v) is None and not is_placeholder(v) \
        and not v.startswith(b"@")


def _split_context(key: bytes) -> tuple[bytes, bytes, bytes]:
    """(text before on the same line, key group, text after on the same line) of a rule with
    ``context`` set (see Rule.key_of)."""
    before, k, after = [*key.split(b"\0", 2), b"", b""][:3]
    before = before[max(before.rfind(b"\n"), before.rfind(b"\r")) + 1:]
    cut = min((i for i in (after.find(b"\n"), after.find(b"\r")) if i != -1), default=len(after))
    return before, k, after[:cut]


_HASH_CONTEXT = re.compile(rb"(?i)(?:hash|sha\d*|integrity|digest|checksum|md5|fingerprint"
                           rb"|thumbprint|etag|signature|nonce|salt)[\"']?[ \t]*[:=]?[ \t]*[\"']?"
                           rb"(?:sha\d+[-:])?$")


def _bare_64_byte_key(value: bytes, key: bytes) -> bool:
    # 64 random bytes: mixed case and digits, and no single-character runs typical of padding
    # data; a SHA-512 is 64 bytes too: not after a hash-like name ("contentHash", "sha512")
    body = value[:-2]
    before, _, _ = _split_context(key)
    return char_classes(body) >= 3 and entropy(body) >= 4.5 and not is_placeholder(value) \
        and _HASH_CONTEXT.search(before) is None


def _bare_32_byte_key(value: bytes, key: bytes) -> bool:
    body = value[:-1]
    return char_classes(body) >= 3 and entropy(body) >= 4.3 and not is_placeholder(value)


def _opaque_token(value: bytes, key: bytes) -> bool:
    # an opaque token mixes letters and digits or cases ("authorization_uri" is a parameter)
    alnum = bytes(c for c in value if chr(c).isalnum())
    return random_looking(16, 3.0)(value, key) and char_classes(alnum) >= 2


def _url_password(value: bytes, key: bytes) -> bool:
    # "https://host:443/@types/x" is a port and a path, not user:password
    return not is_placeholder(value) and re.match(rb"[0-9]{1,5}(?:/|$)", value) is None


def _cookie_value(value: bytes, key: bytes) -> bool:
    return len(value) >= 16 and char_classes(value) >= 2 and not is_placeholder(value) \
        and entropy(value) >= 3.0


_BENIGN_KEY_SUFFIXES = (
    b"name", b"names", b"id", b"ids", b"type", b"file", b"path", b"dir", b"url", b"uri",
    b"ref", b"length", b"len", b"policy", b"expiry", b"expires", b"expiration", b"endpoint",
    b"count", b"enabled", b"version", b"hint", b"prompt", b"field", b"_at", b"kind", b"format",
    b"source", b"mode", b"provider", b"store", b"header", b"limit", b"size", b"usage",
    b"tokens", b"ttl", b"location", b"label", b"lifetime", b"duration", b"rotation", b"method",
    b"validity", b"permissions", b"scope", b"scopes", b"template", b"mount", b"volume", b"keyref",
    b"secretref", b"class", b"status", b"state", b"reset", b"changed", b"min", b"max",
    b"helper", b"user", b"username", b"email", b"usehttppath", b"hash", b"endpoint",
)
_PASSWORD_KEYS = (b"pass", b"pwd", b"secret", b"credential", b"conn")


_FILE_NAME = re.compile(rb".*\.[a-z]{1,4}")  # "hybpwd.c:79:5:" is a compiler location
_LINE_COL = re.compile(rb"[0-9]+(?::[0-9]+)*:?")
_PWD_WORD = re.compile(rb"(?:^|[^a-z])pwd(?:$|[^a-z])")


_CODE_REF = re.compile(rb"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+")
_SOURCES = re.compile(rb"[a-z]{2,12}")


def _generic_assignment(value: bytes, key: bytes) -> bool:
    before, key, after = _split_context(key)
    if after[:1] in (b"(", b"[", b".") or _CODE_REF.fullmatch(value):
        return False  # code naming a secret: os.environ["X"], settings.DB_PASSWORD, f(x)
    if _SOURCES.fullmatch(value) and re.match(rb"[ \t]+[a-z]", after):
        return False  # "passwd:  files systemd" (nsswitch.conf): a list of words, not a value
    if before.rstrip().endswith((b"def", b"function", b"fn", b"func")):
        return False
    k = key.lower().strip(b"\"'-_.")
    if b"csrf" in k or b"xsrf" in k:
        return False  # anti-forgery tokens are not credentials
    if k == b"passwd" and _SOURCES.fullmatch(value):
        return False  # "passwd: files" names a database source (nsswitch.conf, pam)
    if k in (b"pwd", b"oldpwd") or k.endswith(_BENIGN_KEY_SUFFIXES):
        return False
    if is_placeholder(value) or _FILE_NAME.fullmatch(k) or _LINE_COL.fullmatch(value):
        return False
    if b"pwd" in k and not any(p in k for p in _PASSWORD_KEYS if p != b"pwd") \
            and _PWD_WORD.search(k) is None:
        return False  # "pwd" inside a longer word (hybpwd, pwdqmc) is not a password key
    if b"conn" in k and b";" in value and b"=" in value:
        return False  # a structured connection string: its secret parts have rules of their own
    if any(p in k for p in _PASSWORD_KEYS):  # passwords may be short and low-entropy
        return len(value) >= 4
    return len(value) >= 12 and char_classes(value) >= 2 and entropy(value) >= 3.0


_GENERIC_KEYWORDS = (
    b"password", b"passwd", b"passphrase", b"pwd", b"secret", b"token", b"credential",
    b"apikey", b"api_key", b"api-key", b"accesskey", b"access_key", b"access-key",
    b"privatekey", b"private_key", b"private-key", b"authkey", b"auth_key", b"auth-key",
    b"connectionstring", b"connection_string", b"connection-string", b"connstr", b"conn_str",
)
_GENERIC_KEY = (
    rb"(?P<k>[A-Za-z0-9_.-]{0,40}?(?:"
    + b"|".join(re.escape(k) for k in _GENERIC_KEYWORDS)
    + rb")[A-Za-z0-9_.-]{0,40})"
)
# a quoted value (JSON escapes allowed) or an unquoted token
_VALUE = (
    rb"""(?:"(?P<s>(?:[^"\\\r\n]|\\[^\r\n]){1,8192})"|'(?P<s2>[^'\r\n]{1,8192})'"""
    rb"""|(?P<s3>[^\s"',;{}\[\]()<>]{1,8192}+))"""
)

_AZ_HEX32_KEYS = (
    b"api-key", b"ocp-apim-subscription-key", b"azure_openai_api_key", b"openai_api_key",
    b'"key1"', b'"key2"', b"subscription-key", b"subscription_key", b"primarykey",
    b"secondarykey", b"instrumentationkey",
)

DEFAULT_RULES: tuple[Rule, ...] = (
    # --- Azure identifiable keys (signature at a fixed offset) -------------------------------
    _ident("azure-storage-key-identifiable", b"+ASt", "Storage account key (identifiable)",
           76, B64 + b"{5}[AQgw]=="),
    _ident("azure-cosmosdb-key-identifiable", b"ACDb", "Cosmos DB key (identifiable)",
           76, B64 + b"{5}[AQgw]=="),
    _ident("azure-batch-key-identifiable", b"+ABa", "Batch account key (identifiable)",
           76, B64 + b"{5}[AQgw]=="),
    _ident("azure-apim-key-identifiable", b"APIM", "API Management key (identifiable)",
           76, B64 + b"{5}[AQgw]=="),
    _ident("azure-ml-key-identifiable", b"+AMC", "Machine Learning key (identifiable)",
           76, B64 + b"{5}[AQgw]=="),
    _ident("azure-service-bus-key-identifiable", b"+ASb", "Service Bus key (identifiable)",
           33, b"[A-P]" + B64 + b"{5}="),
    _ident("azure-event-hubs-key-identifiable", b"+AEh", "Event Hubs key (identifiable)",
           33, b"[A-P]" + B64 + b"{5}="),
    _ident("azure-relay-key-identifiable", b"+ARm", "Relay key (identifiable)",
           33, b"[A-P]" + B64 + b"{5}="),
    _ident("azure-iot-key-identifiable", b"AIoT", "IoT Hub / device / DPS key (identifiable)",
           33, b"[A-P]" + B64 + b"{5}="),
    _ident("azure-redis-key-identifiable", b"AzCa", "Cache for Redis key (identifiable)",
           33, b"[A-P]" + B64 + b"{5}="),
    _ident("azure-event-grid-key-identifiable", b"AZEG", "Event Grid key (identifiable)",
           33, b"[A-P]" + B64 + b"{5}="),
    _ident("azure-function-key-identifiable", b"AzFu", "Function key (identifiable)",
           44, rb"[A-Za-z0-9_-]{5}[AQgw]==", body=rb"[A-Za-z0-9_-]",
           left=rb"(?<![A-Za-z0-9_-])", right=rb"(?![A-Za-z0-9_=-])"),
    _ident("azure-search-key-identifiable", b"AzSe", "Cognitive Search key (identifiable)",
           42, rb"[A-D][A-Za-z0-9]{5}", body=rb"[A-Za-z0-9]",
           left=rb"(?<![A-Za-z0-9])", right=rb"(?![A-Za-z0-9])"),
    _ident("azure-container-registry-key-identifiable", b"+ACR",
           "Container Registry password (identifiable)", 42, b"[A-D]" + B64 + b"{5}"),
    _ident("azure-devops-pat", b"JQQJ9", "Azure DevOps PAT (CASK, provider AZDO)", 52,
           rb"[0-9A-Za-z][A-Za-z0-9]{18}AZDO[A-Za-z0-9]{4}", body=rb"[A-Za-z0-9]",
           left=rb"(?<![A-Za-z0-9])", right=rb"(?![A-Za-z0-9])"),
    _ident("azure-ai-services-key", b"JQQJ9", "Azure AI services / OpenAI key (CASK, ACOG)", 52,
           rb"[0-9A-Za-z][A-Za-z0-9]{18}ACOG[A-Za-z0-9]{4}", body=rb"[A-Za-z0-9]",
           left=rb"(?<![A-Za-z0-9])", right=rb"(?![A-Za-z0-9])"),
    _ident("azure-cask-key", b"JQQJ9", "Other CASK keys (Maps, Communication, App Config ...)",
           52, rb"[0-9A-Za-z][A-Za-z0-9]{26,30}", body=rb"[A-Za-z0-9]",
           left=rb"(?<![A-Za-z0-9])", right=rb"(?![A-Za-z0-9])"),
    _prefix("azure-entra-client-secret", "Entra ID client secret (Q~ marker)",
            rb"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}[78]Q~[A-Za-z0-9_~.-]{31,34}"
            rb"(?![A-Za-z0-9_~.-])", b"Q~", lookback=4),
    # --- Azure context rules --------------------------------------------------------------------
    Rule("azure-cosmosdb-connection-string", "Cosmos DB connection string AccountKey",
         rb"AccountEndpoint=https://[^;\s]+\.documents\.azure\.com[^;\s]*;[ \t]*AccountKey="
         rb"(?P<s>" + B64 + rb"{20,}={0,2})", (b".documents.azure.com",), check=not_placeholder,
         flags=re.I),
    Rule("azure-storage-key", "Storage / Cosmos / Batch account key after a key name",
         rb"(?<![A-Za-z0-9])(?:AccountKey|SharedKey|account[_-]key|AZURE_STORAGE_KEY|StorageKey"
         rb"|(?:primary|secondary)(?:Readonly)?MasterKey|storage[_-]key)" + ASSIGN
         + rb"(?P<s>" + B64 + rb"{20,}={0,2})", (b"accountkey", b"sharedkey", b"account_key",
         b"account-key", b"azure_storage_key", b"storagekey", b"masterkey", b"storage_key",
         b"storage-key"), flags=re.I, check=not_placeholder),
    Rule("azure-legacy-64-byte-key", "Bare 88-char base64 key (storage, Cosmos DB, Batch)",
         rb"(?<![A-Za-z0-9+/=_,-])(?<!base64,)" + B64 + rb"{86}==" + RB64, (b"==",),
         lookback=86, anchor=b"==", anchor_offset=86, check=_bare_64_byte_key, context=40),
    Rule("azure-legacy-32-byte-key-tsv", "Bare 44-char base64 key as a TSV field (-o tsv of "
         "Service Bus / Event Hubs / Redis keys)",
         rb"(?:(?<=\t)(?P<s>" + B64 + rb"{42}[AEIMQUYcgkosw048]=)(?=[\t\r\n]|$)"
         rb"|(?<![^\r\n])(?P<s2>" + B64 + rb"{42}[AEIMQUYcgkosw048]=)(?=\t))",
         (b"=\t", b"=\n", b"=\r"), lookback=43, check=_bare_32_byte_key),
    Rule("azure-shared-access-key", "Service Bus / Event Hubs / Relay / IoT / SignalR key",
         rb"(?<![A-Za-z0-9])(?:SharedAccessKey|AccessKey|primaryKey|secondaryKey)" + ASSIGN
         + rb"(?P<s>" + B64 + rb"{30,86}={0,2})", (b"sharedaccesskey", b"accesskey",
         b"primarykey", b"secondarykey"), flags=re.I,
         check=random_looking(30, 3.5)),
    Rule("azure-sas-signature", "SAS token signature (sig=) in URLs and connection strings",
         rb"(?<![A-Za-z0-9_])sig=(?P<s>[A-Za-z0-9%+/=_-]{16,})", (b"sig=",), flags=re.I,
         check=not_placeholder),
    Rule("azure-app-configuration-secret", "App Configuration / other connection-string Secret=",
         rb"(?<![A-Za-z0-9])Secret=(?P<s>[^;\s\"']{8,})", (b"secret=",), flags=re.I,
         check=not_placeholder),
    Rule("azure-redis-connection-password", "Cache for Redis connection string password",
         rb"\.redis\.cache\.windows\.net:\d+,[ \t]*password=(?P<s>[^,\s\"']+)",
         (b".redis.cache.windows.net",), flags=re.I, check=not_placeholder),
    Rule("azure-connection-string-password", "Password= / Pwd= in SQL and other conn strings",
         rb"(?<![A-Za-z0-9_])(?:Password|Pwd)=(?P<s>\{[^}\r\n]*\}|[^;\r\n\"']{1,256})",
         (b"password=", b"pwd="), flags=re.I, check=_not_path),
    Rule("azure-function-key", "Function key in ?code= or x-functions-key / masterKey",
         rb"(?:[?&]code=|(?:x-functions-key|masterKey|functionKey|systemKey)" + ASSIGN_STRICT
         + rb")(?P<s>[A-Za-z0-9_%-]{30,}(?:==|%3D%3D)?)", (b"code=", b"x-functions-key",
         b"masterkey", b"functionkey", b"systemkey"), flags=re.I, check=not_placeholder),
    Rule("azure-publishing-profile-password", "Web app publishing profile userPWD",
         rb"userPWD\"?[ \t]*[=:][ \t]*\"(?P<s>[^\"\r\n]+)\"", (b"userpwd",), flags=re.I,
         check=not_placeholder),
    Rule("azure-cli-secret-flag", "az/CLI flags carrying secrets (--admin-password ...)",
         rb"(?<![A-Za-z0-9_-])--(?:admin-password|password|client-secret|secret|account-key"
         rb"|sas-token|connection-string|auth-token|pat|api-key|registry-password|value|token"
         rb"|authkey|auth-key|password-stdin-value|db-password|master-key|access-key)"
         rb"(?:[ \t]+|=)(?P<s>\"[^\"\r\n]*\"|'[^'\r\n]*'|[^\s\"'|;&]+)",
         (b"--admin-password", b"--password", b"--client-secret", b"--secret", b"--account-key",
          b"--sas-token", b"--connection-string", b"--auth-token", b"--pat", b"--api-key",
          b"--registry-password", b"--value", b"--token", b"--authkey", b"--auth-key",
          b"--db-password", b"--master-key", b"--access-key"), check=_not_metavar),
    Rule("azure-devops-pat-legacy", "Legacy Azure DevOps PAT (52 base32 chars) after its name",
         rb"(?<![A-Za-z0-9])(?:AZURE_DEVOPS_EXT_PAT|SYSTEM_ACCESSTOKEN|AZDO_PAT|ADO_PAT"
         rb"|DEVOPS_PAT)" + ASSIGN + rb"(?P<s>[a-z2-7]{52})(?![A-Za-z0-9])",
         (b"azure_devops_ext_pat", b"system_accesstoken", b"azdo_pat", b"ado_pat",
          b"devops_pat"), flags=re.I),
    Rule("azure-hex-32-key", "Legacy 32-hex keys (Cognitive/OpenAI, APIM, App Insights)",
         rb"(?:api-key|ocp-apim-subscription-key|azure_openai_api_key|openai_api_key|\"key1\""
         rb"|\"key2\"|subscription[-_]key|primaryKey|secondaryKey|instrumentationKey)"
         + ASSIGN + rb"(?P<s>[a-fA-F0-9]{32})(?![A-Za-z0-9])", _AZ_HEX32_KEYS, flags=re.I),
    # --- other cloud providers ------------------------------------------------------------------
    _prefix("aws-access-key-id", "AWS access key id",
            rb"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Z0-9])",
            b"AKIA", b"ASIA", b"ABIA", b"ACCA"),
    Rule("aws-secret-access-key", "AWS secret access key after its name",
         rb"(?:aws_?secret_?access_?key|SecretAccessKey|aws_?secret_?key)" + ASSIGN
         + rb"(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
         (b"secret_access_key", b"secretaccesskey", b"aws_secret_key", b"awssecretkey"),
         flags=re.I, check=not_placeholder),
    Rule("aws-session-token", "AWS session token after its name",
         rb"(?:aws_?session_?token|SessionToken|aws_?security_?token)" + ASSIGN
         + rb"(?P<s>[A-Za-z0-9/+=]{100,})", (b"session_token", b"sessiontoken",
         b"security_token", b"securitytoken"), flags=re.I),
    _prefix("aws-bedrock-api-key", "AWS Bedrock API key",
            LW + rb"ABSK[A-Za-z0-9+/]{60,}={0,2}", b"ABSK"),
    _prefix("gcp-api-key", "Google API key", LW + rb"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",
            b"AIza"),
    Rule("gcp-service-account-private-key", "GCP service-account JSON private_key value",
         rb"\"private_key\"[ \t]*:[ \t]*\"(?P<s>(?:[^\"\\\r\n]|\\[^\r\n]){16,})\"",
         (b"\"private_key\"",), check=not_placeholder),
    _prefix("google-oauth-access-token", "Google OAuth access token",
            LW + rb"ya29\.[0-9A-Za-z_-]{20,}", b"ya29."),
    _prefix("google-oauth-client-secret", "Google OAuth client secret",
            LW + rb"GOCSPX-[0-9A-Za-z_-]{28}", b"GOCSPX-"),
    # --- code hosting, chat, payments, AI -------------------------------------------------------
    _prefix("github-token", "GitHub token (ghp_ gho_ ghu_ ghs_ ghr_)",
            LW + rb"gh[pousr]_[A-Za-z0-9]{36,255}" + RW, b"ghp_", b"gho_", b"ghu_", b"ghs_",
            b"ghr_"),
    _prefix("github-fine-grained-pat", "GitHub fine-grained PAT",
            LW + rb"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}" + RW, b"github_pat_"),
    _prefix("gitlab-token", "GitLab tokens (glpat- glrt- gldt- ...)",
            rb"(?<![A-Za-z0-9_-])gl(?:pat|rt|dt|ptt|ft|imt|cbt|soat|oas|agent|ffct)-"
            rb"[0-9A-Za-z_.-]{20,}", b"glpat-", b"glrt-", b"gldt-", b"glptt-", b"glft-",
            b"glimt-", b"glcbt-", b"glsoat-", b"gloas-", b"glagent-", b"glffct-"),
    _prefix("slack-token", "Slack token (xoxb- xoxp- ...)",
            LW + rb"xox[abposre]-[0-9A-Za-z-]{10,}", b"xoxa-", b"xoxb-", b"xoxp-", b"xoxo-",
            b"xoxs-", b"xoxr-", b"xoxe-"),
    _prefix("slack-app-token", "Slack app-level token",
            LW + rb"xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+", b"xapp-"),
    Rule("slack-webhook", "Slack webhook URL path",
         rb"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9+/_-]{20,})",
         (b"hooks.slack.com/",), strong=True),
    _prefix("stripe-key", "Stripe secret / restricted key",
            LW + rb"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,247}", b"sk_live_", b"sk_test_",
            b"rk_live_", b"rk_test_"),
    _prefix("stripe-webhook-secret", "Stripe webhook signing secret",
            LW + rb"whsec_[A-Za-z0-9]{32,}", b"whsec_"),
    _prefix("openai-api-key", "OpenAI project / service-account / admin key",
            LW + rb"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}", b"sk-proj-", b"sk-svcacct-",
            b"sk-admin-"),
    _prefix("openai-api-key-legacy", "OpenAI legacy key (sk-...T3BlbkFJ...)",
            LW + rb"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}" + RW, b"T3BlbkFJ", lookback=23),
    _prefix("anthropic-api-key", "Anthropic API / admin key",
            LW + rb"sk-ant-(?:api|admin|sid|oat|ort)\d\d-[A-Za-z0-9_-]{40,}", b"sk-ant-"),
    _prefix("groq-api-key", "Groq API key", LW + rb"gsk_[A-Za-z0-9]{48,56}" + RW, b"gsk_"),
    _prefix("openrouter-api-key", "OpenRouter API key", LW + rb"sk-or-v1-[a-f0-9]{64}" + RW,
            b"sk-or-v1-"),
    _prefix("langsmith-api-key", "LangSmith (LangChain) API key",
            LW + rb"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}" + RW, b"lsv2_pt_", b"lsv2_sk_"),
    _prefix("replicate-api-token", "Replicate API token", LW + rb"r8_[A-Za-z0-9]{37}" + RW,
            b"r8_"),
    _prefix("tailscale-key", "Tailscale auth / API / OAuth client key",
            LW + rb"tskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{16,}",
            b"tskey-"),
    _prefix("postman-api-key", "Postman API key", LW + rb"PMAK-[a-f0-9]{24}-[a-f0-9]{34}" + RW,
            b"PMAK-"),
    _prefix("atlassian-api-token", "Atlassian API token (ATATT / ATCTT)",
            LW + rb"AT[AC]TT3[A-Za-z0-9_=-]{100,}", b"ATATT3", b"ATCTT3"),
    _prefix("supabase-key", "Supabase access token / secret key (sbp_, sb_secret_)",
            LW + rb"(?:sbp_[a-f0-9]{40}|sb_secret_[A-Za-z0-9_-]{20,})" + RW, b"sbp_",
            b"sb_secret_"),
    _prefix("huggingface-token", "Hugging Face token", LW + rb"hf_[A-Za-z]{34}" + RW, b"hf_"),
    # --- package registries and developer platforms ---------------------------------------------
    _prefix("npm-token", "npm access token", LW + rb"npm_[A-Za-z0-9]{36}" + RW, b"npm_"),
    _prefix("pypi-token", "PyPI upload token",
            LW + rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", b"pypi-AgEIcHlwaS5vcmc"),
    _prefix("nuget-api-key", "NuGet API key", LW + rb"oy2[a-z0-9]{43}" + RW, b"oy2"),
    _prefix("docker-hub-pat", "Docker Hub personal access token",
            LW + rb"dckr_pat_[A-Za-z0-9_-]{27,}", b"dckr_pat_"),
    _prefix("databricks-token", "Databricks token",
            LW + rb"dapi[a-f0-9]{32}(?:-\d)?" + RW, b"dapi"),
    _prefix("digitalocean-token", "DigitalOcean token",
            LW + rb"do[opr]_v1_[a-f0-9]{64}", b"dop_v1_", b"doo_v1_", b"dor_v1_"),
    _prefix("sendgrid-api-key", "SendGrid API key",
            LW + rb"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", b"SG."),
    _prefix("hashicorp-vault-token", "HashiCorp Vault token",
            LW + rb"hv[sbr]\.[A-Za-z0-9_-]{24,}", b"hvs.", b"hvb.", b"hvr."),
    _prefix("terraform-cloud-token", "Terraform Cloud token",
            rb"(?<![A-Za-z0-9])[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_-]{60,70}", b".atlasv1.",
            lookback=14),
    _prefix("age-secret-key", "age secret key",
            rb"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", b"AGE-SECRET-KEY-1"),
    _prefix("shopify-token", "Shopify token", LW + rb"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}",
            b"shpat_", b"shpss_", b"shpca_", b"shppa_"),
    _prefix("grafana-token", "Grafana service-account / cloud token",
            LW + rb"(?:glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,}={0,2})",
            b"glsa_", b"glc_"),
    _prefix("sentry-token", "Sentry token", LW + rb"sntry[us]_[A-Za-z0-9+/=_-]{40,}",
            b"sntryu_", b"sntrys_"),
    _prefix("heroku-api-key", "Heroku API key", LW + rb"HRKU-AA[0-9A-Za-z_-]{58}", b"HRKU-"),
    _prefix("pulumi-token", "Pulumi access token", LW + rb"pul-[a-f0-9]{40}" + RW, b"pul-"),
    _prefix("doppler-token", "Doppler token",
            LW + rb"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}", b"dp.pt.", b"dp.st.",
            b"dp.sa.", b"dp.ct.", b"dp.scim.", b"dp.audit."),
    _prefix("telegram-bot-token", "Telegram bot token",
            rb"(?<![0-9])[0-9]{8,10}:AA[0-9A-Za-z_-]{33}(?![0-9A-Za-z_-])", b":AA", lookback=10),
    _prefix("mailchimp-api-key", "Mailchimp API key",
            rb"(?<![a-f0-9])[a-f0-9]{32}-us[0-9]{1,2}(?![0-9])", b"-us", lookback=32),
    _prefix("linear-api-key", "Linear API key", LW + rb"lin_api_[A-Za-z0-9]{40}", b"lin_api_"),
    # --- generic structures ---------------------------------------------------------------------
    _prefix("jwe", "JSON Web Encryption token (five base64url segments)",
            rb"(?<![A-Za-z0-9_.-])eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{10,}"
            rb"\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}(?![A-Za-z0-9_.-])", b"eyJ"),
    _prefix("entra-refresh-token", "Entra ID / MSAL refresh token (0.A… / 1.A…, long)",
            rb"(?<![A-Za-z0-9._-])[01]\.A[A-Za-z0-9_-]{3}[A-Za-z0-9_*.!-]{300,}", b"0.a", b"1.a"),
    _prefix("aws-ecr-password", "ECR login password (base64 JSON {\"payload\":…})",
            LB64 + rb"eyJwYXlsb2FkIjo[gi][A-Za-z0-9+/]{100,}={0,2}", b"eyJwYXlsb2FkIjo"),
    Rule("aws-secret-after-key-id", "AWS secret key next to its key id (credential CSV, TSV)",
         rb"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}[\"']?[ \t]*[,\t|][ \t]*[\"']?"
         rb"(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])", (b"akia", b"asia"),
         check=random_looking(40, 4.0)),
    Rule("wireguard-key", "WireGuard PrivateKey / PresharedKey",
         rb"(?:PrivateKey|PresharedKey)[ \t]*=[ \t]*(?P<s>[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)",
         (b"privatekey", b"presharedkey"), flags=re.I, check=not_placeholder),
    Rule("session-cookie", "Session cookies (ASP.NET, EasyAuth, ESTSAUTH, connect.sid, Django, "
         "JSESSIONID, Flask, PHP)",
         rb"(?<![A-Za-z0-9_-])(?:\.AspNetCore\.[A-Za-z0-9._-]{1,64}|\.ASPXAUTH|AppServiceAuthSession"
         rb"|ESTSAUTH[A-Z]{0,12}|connect\.sid|sessionid|JSESSIONID|PHPSESSID|laravel_session"
         rb"|_[a-z]{2,20}_session|session)(?:=|[ \t]*\t)(?P<s>[^;\s\"',]{16,8192})",
         (b".aspnetcore.", b".aspxauth", b"appserviceauthsession", b"estsauth", b"connect.sid",
          b"sessionid", b"jsessionid", b"phpsessid", b"_session", b"session="),
         flags=re.I, check=_cookie_value),
    Rule("cli-secret-flag", "Secrets passed as CLI flags (docker login -p, curl -u, redis-cli -a, "
         "openssl pass:, ldapsearch -w, 7z -p, az -p)",
         rb"(?:(?<![A-Za-z0-9_-])(?:docker|podman|helm(?:[ \t]+registry)?|oras|az(?:[ \t]+acr)?)"
         rb"[ \t]+login[ \t][^\r\n|;&]*?(?<=[ \t])-p"
         rb"[ \t]+(?P<s>[^\s\"']+|\"[^\"\r\n]+\"|'[^'\r\n]+')"
         rb"|(?<![A-Za-z0-9_-])curl[ \t][^\r\n|;&]*?(?<=[ \t])(?:-u|--user|--proxy-user)[ \t]*"
         rb"[\"']?[^\s:\"']+:(?P<s2>[^\s\"']+)"
         rb"|(?<![A-Za-z0-9_-])redis-cli[ \t][^\r\n|;&]*?(?<=[ \t])-a[ \t]+(?P<s3>[^\s\"']+)"
         rb"|(?<![A-Za-z0-9_-])-pass(?:in|out)?[ \t]+[\"']?pass:(?P<s4>[^\s\"']+)"
         rb"|(?<![A-Za-z0-9_-])ldap[a-z]{2,12}[ \t][^\r\n|;&]*?(?<=[ \t])-w[ \t]+(?P<s5>[^\s\"']+)"
         rb"|(?<![A-Za-z0-9_-])7z[a-z]?[ \t][^\r\n|;&]*?(?<=[ \t])-p(?P<s6>[^\s\"'-][^\s\"']*))",
         (b"docker", b"podman", b"helm", b"oras", b"az ", b"curl", b"redis-cli", b"pass:",
          b"ldap", b"7z"), check=_not_metavar),
    Rule("ci-secret-variable", "CI log commands that declare a secret (##vso setvariable "
         "issecret=true, ::add-mask::)",
         rb"##vso\[task\.setvariable[ \t][^\]\r\n]{0,512}issecret=true[^\]\r\n]{0,256}\]"
         rb"(?P<s>[^\r\n]+)|::add-mask::(?P<s2>[^\r\n]+)",
         (b"##vso[task.setvariable", b"::add-mask::"), flags=re.I, check=not_placeholder),
    Rule("truncated-token", "Known token prefix cut off with an ellipsis (sk-ant-api03-ab…)",
         rb"(?<![A-Za-z0-9_-])(?P<s>(?:sk-ant-|sk-proj-|sk-or-v1-|gh[pousr]_|github_pat_|glpat-"
         rb"|xox[abposre]-|AKIA|ASIA|hvs\.|npm_|pypi-|dckr_pat_|[sr]k_live_|AIza|ya29\.|gsk_|r8_"
         rb"|tskey-|PMAK-|ATATT3|sbp_|sb_secret_|lsv2_|hf_|dop_v1_|SG\.|glsa_|sntry[us]_)"
         rb"[A-Za-z0-9_.+/=-]{3,})(?:\xe2\x80\xa6|\.\.\.)",
         (b"sk-ant-", b"sk-proj-", b"sk-or-v1-", b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_",
          b"github_pat_", b"glpat-", b"xoxa-", b"xoxb-", b"xoxp-", b"xoxo-", b"xoxs-", b"xoxr-",
          b"xoxe-", b"akia", b"asia", b"hvs.", b"npm_", b"pypi-", b"dckr_pat_", b"sk_live_",
          b"rk_live_", b"aiza", b"ya29.", b"gsk_", b"r8_", b"tskey-", b"pmak-", b"atatt3",
          b"sbp_", b"sb_secret_", b"lsv2_", b"hf_", b"dop_v1_", b"sg.", b"glsa_", b"sntryu_",
          b"sntrys_"), check=_truncated_body),
    Rule("base64-secret-document", "base64 of a kubeconfig or docker config (decoded in a "
         "window)",
         LB64 + rb"(?:YXBpVmVyc2lvbj|eyJhdXRocyI6|ewogICJhdXRocyI6)" + B64 + rb"{40,}={0,2}",
         (b"YXBpVmVyc2lvbj", b"eyJhdXRocyI6", b"ewogICJhdXRocyI6"), check=_b64_document,
         strong=True),
    _prefix("jwt", "JSON Web Token (Entra access/ID tokens and others)",
            rb"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
            b"eyJ"),
    Rule("pem-private-key-inline", "PEM private key with escaped newlines on one line (JSON)",
         rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?P<s>(?:\\[rn]|[A-Za-z0-9+/=:,"
         rb" -])+?)(?=-----END|[\"\r\n]|$)", (b"private key",), strong=True),
    Rule("pem-private-key-base64", "base64 of a PEM/PuTTY private key (kubeconfig key data)",
         LB64 + rb"(?:LS0tLS1CRUdJTi|UHVUVFktVXNlci1LZXktRmlsZ)" + B64 + rb"{20,}={0,2}",
         (b"LS0tLS1CRUdJTi", b"UHVUVFktVXNlci1LZXktRmlsZ"), check=_b64_pem_private,
         strong=True),
    Rule("url-credentials", "Password in a URL (scheme://user:password@host; '@', '/' inside)",
         rb"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@\"'<>]{0,256}:"
         rb"(?P<s>[^\s\"'<>]{1,256})@[A-Za-z0-9\[][A-Za-z0-9.:\]-]*(?=[/?#\s\"'<>,;)]|$)",
         (b"://",), check=_url_password),
    Rule("url-token-user", "A token used as the user of a URL (https://<PAT>@host)",
         rb"(?<![A-Za-z0-9+.-])https?://(?P<s>[A-Za-z0-9_-]{20,256})@[A-Za-z0-9]",
         (b"://",), check=random_looking(20, 3.5)),
    Rule("http-auth-header", "Authorization header values (Bearer, Basic, SharedKey, SAS)",
         rb"(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:Bearer|Basic|token|Digest"
         rb"|SharedKey[ \t]+[^:\s]+:|SharedAccessSignature|Negotiate|NTLM)?[ \t]*"
         rb"(?P<s>[^\s\"',]{8,})", (b"authorization",), flags=re.I, check=not_placeholder),
    Rule("bearer-token", "Bearer token anywhere",
         rb"(?<![A-Za-z0-9])Bearer[ \t]+(?P<s>[A-Za-z0-9._~+/-]{16,}=*)",
         (b"bearer",), flags=re.I, check=_opaque_token),
    Rule("api-key-header", "API key headers (x-api-key, api-key, private-token ...)",
         rb"(?:x-api-key|x-auth-token|private-token|x-functions-key|ocp-apim-subscription-key"
         rb"|x-goog-api-key|api-key)[\"']?[ \t]*[:=][ \t]*[\"']?(?P<s>[^\s\"',;]{12,})",
         (b"x-api-key", b"x-auth-token", b"private-token", b"x-functions-key",
          b"ocp-apim-subscription-key", b"x-goog-api-key", b"api-key"), flags=re.I,
         check=random_looking(12, 3.0)),
    Rule("cli-password-flag", "Passwords on command lines (mysql -p, sshpass -p, sqlcmd -P)",
         rb"(?:(?<![A-Za-z0-9_-])(?:mysql|mysqldump|mariadb|mysqladmin)[ \t][^\r\n|;&]*?"
         rb"(?<=[ \t])-p(?P<s>[^\s-][^\s]*)"
         rb"|(?<![A-Za-z0-9_-])sshpass[ \t]+-p[ \t]*(?P<s2>[^\s]+)"
         rb"|(?<![A-Za-z0-9_-])sqlcmd[ \t][^\r\n|;&]*?(?<=[ \t])-P[ \t]*(?P<s3>[^\s]+))",
         (b"mysql", b"mariadb", b"sshpass", b"sqlcmd"), check=not_placeholder),
    Rule("netrc-password", ".netrc machine/login/password line",
         rb"(?<![A-Za-z0-9_])machine[ \t][ \t]*[^\s]+[ \t]+login[ \t]+[^\s]+[ \t]+password"
         rb"[ \t]+(?P<s>[^\s]+)", (b"machine ", b"machine\t"), check=not_placeholder),
    Rule("docker-config-auth", "Docker config.json \"auth\" (base64 user:password)",
         rb"\"auth\"[ \t]*:[ \t]*\"(?P<s>[A-Za-z0-9+/=]{8,})\"", (b"\"auth\"",),
         check=not_placeholder),
    Rule("xml-secret-element", "XML element under a secret name (<password>…</password>)",
         rb"<(?P<k>[A-Za-z_][A-Za-z0-9_.:-]{0,63})(?:[ \t][^<>\r\n]{0,256})?>"
         rb"(?P<s>[^<>\r\n]{1,4096})</(?P=k)>",
         (b"password>", b"passwd>", b"pwd>", b"secret>", b"token>", b"key>", b"string>",
          b"credential>", b"passphrase>"), check=_xml_secret),
    Rule("ini-secret-key", "INI / rclone / WireGuard-style short keys (pass =, key =, psk =)",
         rb"(?<![^\r\n])[ \t]*(?P<k>pass|key|psk|pw|wpa_psk|wpa_passphrase|passphrase|pin)"
         rb"[ \t]*=[ \t]*(?P<s>[^\s#;\"'][^\r\n]*?)[ \t]*(?=[\r\n]|$)",
         tuple(k + sep for k in (b"pass", b"key", b"psk", b"pw", b"wpa_psk", b"wpa_passphrase",
                                 b"passphrase", b"pin") for sep in (b"=", b" =", b"\t=")),
         flags=re.I,
         check=_ini_secret),
    Rule("generic-secret-assignment",
         "password=/secret:/token/api_key/... assignments in env, JSON, YAML, INI",
         rb"(?<![A-Za-z0-9_.-])" + _GENERIC_KEY + rb"[\"']?[ \t]*(?::=|=>|=|:)[ \t]*" + _VALUE,
         _GENERIC_KEYWORDS,
         flags=re.I, check=_generic_assignment, context=24),
)

# Default rules whose secret always follows their keyword (never starts at or before it): the
# hold-back may release a partial line up to a keyword of theirs (see Detector.hold_point).
# Prefix formats, look-back rules, known values and custom rules are not in this set.
KEYWORD_BEFORE_SECRET: frozenset[str] = frozenset(
    r.id for r in DEFAULT_RULES
    if not r.strong and r.lookback == 0 and r.id != "truncated-token"
)

# Line-structure rules implemented in structure.py (ids listed here so docs/tests see them).
STRUCTURAL_RULES: dict[str, str] = {
    "pem-private-key": "PEM / OpenSSH / PGP private key blocks (BEGIN ... END), all lines",
    "putty-private-key": "PuTTY .ppk private lines and MAC",
    "kubernetes-secret-data": "Kubernetes Secret data:/stringData: values (YAML and JSON)",
    "azure-key-vault-secret-value": "Key Vault \"value\" after a .vault.azure.net/secrets/ id",
    "separated-secret-value": "A \"value\" after a secret name (\"name\": \"X_PASSWORD\", "
                              "\"sensitive\": true), on the same or a later line",
    "secret-block-scalar": "YAML block scalar (key: |) under a secret key",
    "secret-table-cell": "Cells of a Value/Password/Key/Secret column in a table, TSV or CSV",
    "command-output": "Output the command's profile marks secret (whole output, fields, env "
                      "values)",
}
# Ids used for masks that are not from one rule.
SPECIAL_IDS: dict[str, str] = {
    "known-value": "An exact value from known_values_file (and its base64/URL/JSON forms)",
    "held-fragment": "A held partial token that starts like a secret, masked on idle release",
    "session-memory": "A value masked earlier in the session, wherever it appears again",
}


def all_rule_ids() -> list[str]:
    seen: dict[str, None] = {}
    for r in DEFAULT_RULES:
        seen[r.id] = None
    for rid in (*STRUCTURAL_RULES, *SPECIAL_IDS):
        seen[rid] = None
    return list(seen)


def rule_table() -> str:
    """The Markdown rule table of docs/masking.md (a test checks the doc carries it verbatim)."""
    rows = ["| rule id | what it masks |", "| --- | --- |"]
    seen: set[str] = set()
    for r in DEFAULT_RULES:
        if r.id not in seen:
            seen.add(r.id)
            rows.append(f"| `{r.id}` | {r.description} |")
    rows += [f"| `{rid}` | {desc} (line structure) |" for rid, desc in STRUCTURAL_RULES.items()]
    rows += [f"| `{rid}` | {desc} |" for rid, desc in SPECIAL_IDS.items()]
    return "\n".join(rows) + "\n"
