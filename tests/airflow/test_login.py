"""The login as Airflow 3.3.2 runs it: the FAB `webserver_config.py` loads as FAB loads it (OIDC and LDAP, groups
mapped to roles, the bind password from its file), and SimpleAuthManager logs the admin in with the generated
password through a read-only Secret volume, as in the pod.
"""

from __future__ import annotations

import ast
import json

import pytest

from testbed.stacks import TEST_SECRETS
from tests.airflow.rendered_stacks import LDAP_AUTH, LDAP_BIND_PASSWORD, probed

pytestmark = pytest.mark.slow


# --- the FAB webserver_config.py -----------------------------------------------------------------------


def test_oidc_webserver_config_loads_under_fab_and_maps_groups_to_roles(probes, stacks):
    rendered = stacks["prod-oidc"]
    fab = probed(probes, "prod-oidc", "fab")
    assert fab["config_file"] == "/opt/airflow/webserver/webserver_config.py"
    assert fab["loaded"] is True, "FAB skipped the webserver_config.py (silent load)"
    assert fab["auth_type"] == "AUTH_OAUTH"
    assert fab["has_auth_role_public"] is False
    assert fab["security_manager"] == {"name": "GroupsFromOidcClaims", "extends_airflow_override": True}
    settings = fab["settings"]
    assert settings["AUTH_ROLES_MAPPING"] == {
        "airflow-prod-admins": ["Admin"], "airflow-prod-ops": ["Op"], "airflow-prod-users": ["User"]
    }
    assert settings["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert settings["AUTH_USER_REGISTRATION"] is True
    assert settings["AUTH_USER_REGISTRATION_ROLE"] == "Public"
    (provider,) = fab["oauth_providers"]
    # The client secret came from the mounted Secret file, not from the config text.
    assert provider["remote_app"]["client_secret"] == TEST_SECRETS["authOidcClientSecret"]
    assert TEST_SECRETS["authOidcClientSecret"] not in rendered.webserver["webserver_config.py"]
    assert fab["oauth_clients"] == {
        "oidc": {"client_id": "airflow-prod", "client_kwargs": {"scope": "openid email profile groups"}}
    }
    expected_user = {"username": "jdoe", "email": "jdoe@example.org", "first_name": "J", "last_name": "Doe",
                     "role_keys": ["ops", "data-engineers"]}
    assert fab["user_info"] == expected_user
    assert fab["user_info_from_endpoint"] == expected_user


def test_ldap_webserver_config_loads_under_fab_with_the_bind_password_from_its_file(probes, stacks):
    rendered = stacks["prod-ldap"]
    fab = probed(probes, "prod-ldap", "fab")
    assert fab["loaded"] is True, "FAB skipped the webserver_config.py (silent load)"
    assert fab["auth_type"] == "AUTH_LDAP"
    assert fab["has_auth_role_public"] is False
    assert fab["security_manager"] is None
    settings = fab["settings"]
    assert settings["AUTH_ROLES_MAPPING"] == LDAP_AUTH["roleMapping"]
    assert settings["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert settings["AUTH_USER_REGISTRATION_ROLE"] == "Viewer"
    assert settings["AUTH_LDAP_SERVER"] == LDAP_AUTH["ldapUri"]
    assert settings["AUTH_LDAP_SEARCH"] == LDAP_AUTH["ldapSearchBase"]
    assert settings["AUTH_LDAP_BIND_USER"] == LDAP_AUTH["ldapBindDn"]
    assert settings["AUTH_LDAP_BIND_PASSWORD"] == LDAP_BIND_PASSWORD
    assert settings["AUTH_LDAP_UID_FIELD"] == "uid" and settings["AUTH_LDAP_GROUP_FIELD"] == "memberOf"
    assert LDAP_BIND_PASSWORD not in rendered.webserver["webserver_config.py"]


@pytest.mark.parametrize("stack", ["prod-oidc", "prod-ldap"])
def test_webserver_config_imports_only_what_it_uses(stacks, stack):
    tree = ast.parse(stacks[stack].webserver["webserver_config.py"])
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= used, f"unused imports: {sorted(imported - used)}"


# --- the simple auth manager ---------------------------------------------------------------------------


def test_simple_auth_manager_logs_the_admin_in_through_the_read_only_secret_volume(probes, stacks):
    rendered = stacks["dev"]
    password = rendered.run.exports["admin_password"]
    assert json.loads(rendered.webserver["simple_auth_manager_passwords.json"]) == {"admin": password}
    # The Secret volume is read-only and SimpleAuthManager opens the file read-write, so the api-server
    # works on a copy an init container makes in a writable in-memory volume.
    spec = rendered.deployment("api-server")
    (copy,) = [c for c in spec["initContainers"] if c["name"] == "copy-simple-auth-passwords"]
    assert copy["command"] == ["install", "-m", "0600", "/opt/airflow/webserver/simple_auth_manager_passwords.json",
                               "/opt/airflow/simple-auth/simple_auth_manager_passwords.json"]
    assert {"name": "simple-auth", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in spec["volumes"]

    found = probed(probes, "dev", "simple_auth")
    assert found["passwords_file"] == "/opt/airflow/simple-auth/simple_auth_manager_passwords.json"
    assert found["users"] == [["admin", "admin"]]
    assert found["passwords"] == {"admin": password}
    assert found["token_claims"]["sub"] == "admin" and found["token_claims"]["role"] == "admin"
    assert found["wrong_password"] == 401
