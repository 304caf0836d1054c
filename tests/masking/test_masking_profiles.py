"""Command-aware output profiles: the argv -> profile table, and the masker applying them."""

from __future__ import annotations

import shlex

import pytest
from masking_corpus import B62, Gen

from bastion.masking import StreamMasker
from bastion.masking.profiles import PROFILES, profile_for_argv, profile_for_command

# command line, profile name (None: default rules), whole output secret
TABLE = [
    ("az keyvault secret show --vault-name kv --name db --query value -o tsv",
     "az-keyvault-secret", True),
    ("az keyvault secret show --vault-name kv --name db --query value --output tsv",
     "az-keyvault-secret", True),
    ("az keyvault secret show --vault-name kv --name db", "az-keyvault-secret", False),
    ("az keyvault secret list --vault-name kv -o table", None, False),
    ("terraform output -raw admin_password", "terraform-output-raw", True),
    ("terraform output -json", "terraform-output", False),
    ("terraform plan", None, False),
    ("gh auth token", "gh-token", True),
    ("gh auth status", None, False),
    ("az account get-access-token --query accessToken -o tsv", "az-access-token", True),
    ("az account get-access-token", "az-access-token", False),
    ("az account show", None, False),
    ("az storage account keys list -g rg -n st", "az-keys-list", False),
    ("az storage account keys list -g rg -n st --query [0].value -o tsv", "az-keys-list", True),
    ("az cosmosdb keys list -g rg -n db", "az-keys-list", False),
    ("az redis list-keys -g rg -n cache", "az-keys-list", False),
    ("az ad sp create-for-rbac -n ci --role Reader", "az-sp-credentials", False),
    ("az ad app credential reset --id 123", "az-sp-credentials", False),
    ("az acr credential show -n reg", "az-acr-credentials", False),
    ("az webapp deployment list-publishing-profiles -g rg -n app", "az-publishing-profile",
     False),
    ("az webapp config appsettings list -g rg -n app", "az-appsettings", False),
    ("az functionapp config appsettings list -g rg -n fn", "az-appsettings", False),
    ("az containerapp secret list -g rg -n app --show-values", "az-containerapp-secrets", False),
    ("kubectl get secret db -o yaml", "kubectl-secret", False),
    ("kubectl get secret db -o json", "kubectl-secret", False),
    ("kubectl get secret db -o jsonpath={.data.password}", "kubectl-secret", True),
    ("kubectl get secrets", None, False),
    ("kubectl get secret db -o name", None, False),
    ("kubectl get pods -o yaml", None, False),
    ("printenv", "env-dump", False),
    ("printenv DB_PASSWORD", "printenv-var", True),
    ("env", "env-dump", False),
    ("env FOO=1 make test", None, False),
    ("cat .env", "env-file", False),
    ("sudo cat /srv/app/.env.production", "env-file", False),
    ("cat README.md", None, False),
    ("aws ecr get-login-password --region eu-west-1", "aws-ecr-password", True),
    ("ls -la", None, False),
    ("echo $DB_PASSWORD", "echo-secret-var", True),
    ('echo "${ARM_CLIENT_SECRET}"', "echo-secret-var", True),
    ("echo $HOME", None, False),
    ("printf '%s' \"$API_TOKEN\"", "echo-secret-var", True),
]


@pytest.mark.parametrize("cmd,name,whole", TABLE)
def test_profile_table(cmd: str, name: str | None, whole: bool) -> None:
    """Each command maps to its profile (or to the default rules)."""
    prof = profile_for_argv(shlex.split(cmd))
    if name is None:
        assert prof is None
    else:
        assert prof is not None and prof.name == name and prof.whole is whole


def test_every_profile_rule_is_in_the_table() -> None:
    """No profile row is untested: every profile name appears in TABLE."""
    assert {r.name for r in PROFILES} - {n for _, n, _ in TABLE} <= {
        "az-keyvault-secret-download", "az-connection-string", "az-acr-token",
        "az-sas", "az-kubeconfig", "terraform-state", "kubectl-token", "kubectl-kubeconfig",
        "aws-sts", "vault-field"}


@pytest.mark.parametrize("command,name", [
    ("az keyvault secret show --vault-name kv --name db --query value -o tsv | head -1",
     "az-keyvault-secret"),
    ("bash -lc 'gh auth token'", "gh-token"),
    ("sh -c \"terraform output -raw pw\"", "terraform-output-raw"),
    ("ls -la; gh auth token", None),
    ("bash -lc 'ls -la'", None),
])
def test_profile_for_a_command_line(command: str, name: str | None) -> None:
    """Without gate units the command line decides: the first simple command, or the command
    string of a shell -c."""
    prof = profile_for_command((), command)
    assert (prof.name if prof else None) == name
    units = (("ls", "-la"), ("gh", "auth", "token"))
    unit_prof = profile_for_command(units, command)
    assert unit_prof is not None and unit_prof.name == "gh-token"  # units win when present


def _masked(prof_cmd: str, data: bytes) -> bytes:
    m = StreamMasker(profile=profile_for_argv(shlex.split(prof_cmd)))
    return m.feed(data) + m.flush()


def test_whole_output_profile_masks_a_shapeless_value_without_newline() -> None:
    """terraform output -raw prints the value alone, no newline: it is masked."""
    v = Gen(1).s(B62, 20)
    out = _masked("terraform output -raw admin_password", v.encode())
    assert v.encode() not in out and out == b"[MASKED:command-output]"


def test_fields_profile_masks_named_fields_only() -> None:
    """az ad sp create-for-rbac: the password field, not the appId."""
    pw = Gen(2).s(B62, 30)
    data = f'{{\n  "appId": "0f7d7b8a-1111-2222-3333-444455556666",\n  "password": "{pw}"\n}}\n'
    out = _masked("az ad sp create-for-rbac -n ci", data.encode())
    assert pw.encode() not in out
    assert b"0f7d7b8a-1111-2222-3333-444455556666" in out


def test_env_profile_masks_every_value() -> None:
    """printenv: every NAME=value value, even without a secret-looking name or shape."""
    v = Gen(3).s(B62, 12)
    out = _masked("printenv", f"HOME=/home/x\nAPP_SIGNING={v}\n".encode())
    assert v.encode() not in out and b"APP_SIGNING=" in out


def test_set_profile_changes_and_clears() -> None:
    """set_profile applies to the lines that follow; None goes back to the default rules."""
    v = Gen(4).s(B62, 20)
    m = StreamMasker()
    m.set_profile(profile_for_argv(["gh", "auth", "token"]))
    out = m.feed(v.encode() + b"\n")
    m.set_profile(None)
    out += m.feed(v.encode()[::-1] + b"\n") + m.flush()
    assert v.encode() not in out
    assert v.encode()[::-1] in out  # the memory only knows the masked value itself


def test_prompt_in_stream_selects_the_profile_until_the_next_prompt() -> None:
    """A transcript: the command after a prompt decides how its output is masked; the next
    prompt ends it."""
    v = Gen(5).s(B62, 16) + "-x"
    data = (f"azureuser@vm:~$ az keyvault secret show --vault-name kv --name db --query value "
            f"-o tsv\n{v}\nazureuser@vm:~$ echo done\ndone\nazureuser@vm:~$ ").encode()
    m = StreamMasker()
    out = m.feed(data) + m.flush()
    assert v.encode() not in out
    assert out.endswith(b"azureuser@vm:~$ echo done\ndone\nazureuser@vm:~$ ")
